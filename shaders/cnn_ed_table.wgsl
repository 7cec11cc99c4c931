// CNN-ED folded into a table (src/model/cnn_ed.rs, `Folded`): a string's embedding is the
// bias plus, for each of its places l, the table row T[id, l, :]. One thread per (string,
// four outputs) sums in place order, as `Folded::embed` does on the CPU; neighbouring
// threads read neighbouring words of a row.
struct Shape {
    batch: u32,
    max_len: u32,  // M: table rows per character
    dim4: u32,     // outputs / 4
    unseen: u32,   // ids >= this (characters outside the alphabet) add nothing
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> table: array<vec4<f32>>;  // [C, M, dim4]
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;   // [dim4]
@group(0) @binding(3) var<storage, read> ids: array<u32>;          // the batch's ids back to back
@group(0) @binding(4) var<storage, read> starts: array<u32>;       // [batch + 1] into `ids`
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [batch, dim4]

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let thread = gid.x + gid.y * nwg.x * 64u;
    let row = thread / s.dim4;
    let col = thread % s.dim4;
    if row >= s.batch {
        return;
    }
    let start = starts[row];
    let len = min(starts[row + 1u] - start, s.max_len);
    var acc = bias[col];
    for (var l = 0u; l < len; l++) {
        let id = ids[start + l];
        if id < s.unseen {
            acc += table[(id * s.max_len + l) * s.dim4 + col];
        }
    }
    out[row * s.dim4 + col] = acc;
}
