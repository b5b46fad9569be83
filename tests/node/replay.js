// Loads a websockify recording (a script defining VNC_frame_data) as noVNC's playback page
// does, decodes every frame as noVNC's tests/playback-ui.js does (a character's code is a
// byte), and prints, per direction, the bytes it holds (hex) and the frames' times, as JSON.
// tests/record.rs compares them with what went through the proxy.
//
// Usage: node replay.js FILE
'use strict';

const fs = require('fs');
const vm = require('vm');

const context = {};
vm.runInNewContext(fs.readFileSync(process.argv[2], 'utf8'), context);
const frames = context.VNC_frame_data;
if (!Array.isArray(frames)) {
    throw new Error('no VNC_frame_data array');
}
if (frames[frames.length - 1] !== 'EOF') {
    throw new Error('the recording does not end with EOF');
}

const out = { toClient: [], fromClient: [], times: [], frames: 0 };
for (const frame of frames.slice(0, -1)) {
    const mark = frame[0];
    if (mark !== '{' && mark !== '}') {
        throw new Error('bad direction mark in ' + JSON.stringify(frame.slice(0, 20)));
    }
    // playback-ui.js looks for '{' (it replays only frames to the client); a frame from the
    // client closes its time with '}'.
    const dataIdx = frame.indexOf(mark, 1) + 1;
    const time = parseInt(frame.slice(1, dataIdx - 1), 10);
    if (!(time >= 0)) {
        throw new Error('bad time in ' + JSON.stringify(frame.slice(0, 20)));
    }
    const u8 = new Uint8Array(frame.length - dataIdx);
    for (let j = 0; j < frame.length - dataIdx; j++) {
        const code = frame.charCodeAt(dataIdx + j);
        if (code > 255) {
            throw new Error('a character past U+00FF: ' + code);
        }
        u8[j] = code;
    }
    const hex = Buffer.from(u8).toString('hex');
    (mark === '{' ? out.toClient : out.fromClient).push(hex);
    out.times.push(time);
    out.frames++;
}
out.toClient = out.toClient.join('');
out.fromClient = out.fromClient.join('');
process.stdout.write(JSON.stringify(out));
