// CGK codes (src/model/cgk.rs): one invocation per string walks all its repetitions at
// once, step by step: each step writes the current character of every repetition (PAD
// once that walk has passed the end) and advances each walk by its hash bit. Bytes are
// interleaved by step, `j * reps + r`, four to a word; once every walk has passed the
// end the rest of the code is PAD, written a word at a time.
struct Shape {
    batch: u32,
    len: u32,    // n: characters read; 3n steps
    reps: u32,   // repetitions (1..=4)
    words: u32,  // u32 words per code: 3n * reps / 4
}

const PAD: u32 = 128u;
const PAD_WORD: u32 = 0x80808080u;
const STEP_WORDS: u32 = 5u;   // 129 hash bits per step
const TOKEN_WORDS: u32 = 20u; // 80 one-byte tokens per string

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> hash: array<u32>;       // [reps, 3n, STEP_WORDS]
@group(0) @binding(2) var<storage, read> tokens: array<u32>;     // [batch, 80] bytes
@group(0) @binding(3) var<storage, read> lengths: array<u32>;    // [batch] characters
@group(0) @binding(4) var<storage, read_write> codes: array<u32>; // [batch, words]

fn token(row: u32, i: u32) -> u32 {
    return (tokens[row * TOKEN_WORDS + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

@compute @workgroup_size(64)
fn encode(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * 64u;
    if row >= s.batch {
        return;
    }
    let len = min(lengths[row], s.len);
    let steps = 3u * s.len;
    let out = row * s.words;
    var at = vec4<u32>(0u);  // each repetition's position in the string
    var word = 0u;
    var byte = 0u;           // bytes written so far
    for (var j = 0u; j < steps; j++) {
        if byte % 4u == 0u && all(at >= vec4(len)) {
            break;
        }
        for (var r = 0u; r < s.reps; r++) {
            var c = PAD;
            if at[r] < len {
                c = token(row, at[r]);
            }
            word |= c << (8u * (byte % 4u));
            byte++;
            if byte % 4u == 0u {
                codes[out + byte / 4u - 1u] = word;
                word = 0u;
            }
            at[r] += (hash[(r * steps + j) * STEP_WORDS + c / 32u] >> (c % 32u)) & 1u;
        }
    }
    for (var w = byte / 4u; w < s.words; w++) {
        codes[out + w] = PAD_WORD;
    }
}
