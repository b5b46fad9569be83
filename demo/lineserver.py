#!/usr/bin/env python3
"""A tiny line-oriented TCP service for the telnet-style demo page (web/telnet.html).

Usage: lineserver.py [--host 127.0.0.1] PORT

Greets each client, then answers every line it receives with the line in upper case
("> HELLO"). "time" answers the server's clock, "quit" says goodbye and closes.
Standard library only; one thread per client; Ctrl-C or SIGTERM stops it.
"""
import argparse
import signal
import socketserver
import sys
import time


class Handler(socketserver.StreamRequestHandler):
    def send(self, text):
        self.wfile.write(text.encode("utf-8"))
        self.wfile.flush()

    def handle(self):
        self.send("Welcome to the websockify line demo. Type a line; I answer in upper case.\r\n"
                  "Commands: time, quit.\r\n")
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.strip().lower() == "quit":
                self.send("Bye.\r\n")
                return
            if line.strip().lower() == "time":
                self.send(time.strftime("> %Y-%m-%d %H:%M:%S %Z\r\n"))
                continue
            self.send("> " + line.upper() + "\r\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("port", type=int)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Server((args.host, args.port), Handler) as srv:
        print(f"lineserver: listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
