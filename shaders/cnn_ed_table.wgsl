// CNN-ED folded into a table (src/model/cnn_ed.rs, `Folded`): a string's embedding is the
// bias plus, for each of its places l, the table row T[id, l, :].
//   embed:  one thread per (string, 16 outputs) sums in place order, as `Folded::embed`
//           does on the CPU, reading its string's ids four at a time (25% faster on
//           lavapipe than one at a time; the ids broadcast across the subgroup were not
//           faster). Its four vec4 loads a place share the place's id, bounds and
//           branch: 2.1x faster on lavapipe than one vec4 a thread (and one output a
//           thread was slower still); eight measured the same as four.
//   d_table: the backward to the table, dT[c, l, :] = sum of d_out over the strings
//           holding character c at place l: one thread per (place, four outputs) owns
//           every character's row there, zeroes them and adds the strings in order (no
//           atomics, the same bits on every run).
//   d_bias: db = sum of d_out over the strings, in order.
// Each string's ids start at a multiple of 4 and are padded to one with 0xffffffff
// (`ops::cnn_ed::pack_ids`), an id above every alphabet, which adds nothing.
// The table is character-major [C, M, dim] for inference and place-major [M, C, dim] in
// training (the head's output over the places, ops/cnn_ed.rs), so row (c, l) is at
// c * char_stride + l * place_stride. A table larger than one storage binding is split
// into parts of consecutive characters, summed by one `embed` call each: a part holds
// ids first .. first + alphabet, and every part after the first ACCUMULATEs onto `out`.
struct Shape {
    batch: u32,
    max_len: u32,       // M: places
    dim4: u32,          // outputs / 4
    alphabet: u32,      // C: ids >= C (characters outside the alphabet) add nothing
    char_stride: u32,   // vec4s between two characters' rows at one place
    place_stride: u32,  // vec4s between two places' rows of one character
    bias: u32,          // offset of the bias [dim] in `bias` (of db in `grads`), floats
    first: u32,         // embed: the part's first id
    accumulate: u32,    // embed: 1: add to `out` (a later part) instead of to the bias
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> ids: array<u32>;          // the batch's ids, padded
@group(0) @binding(2) var<storage, read> starts: array<u32>;       // [batch + 1] into `ids`

fn row(c: u32, l: u32, col: u32) -> u32 {
    return c * s.char_stride + l * s.place_stride + col;
}

// String `string`'s places (its padding included), cut to M.
fn places(string: u32) -> u32 {
    return min(starts[string + 1u] - starts[string], s.max_len);
}

@group(0) @binding(1) var<storage, read> id_quads: array<vec4<u32>>;  // `ids`, four at a time
@group(0) @binding(3) var<storage, read> table: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>; // [batch, dim4]

// Four vec4s of outputs, `col` .. `col + 3` (16 outputs), in named variables.
struct Sums {
    a: vec4<f32>,
    b: vec4<f32>,
    c: vec4<f32>,
    d: vec4<f32>,
}

// Adds row (id, l) at vec4s col, col + k.x, col + k.y, col + k.z when id (less the part's
// first) is in the part and l is a place (a string longer than M ends there).
fn add_rows(acc: Sums, id: u32, l: u32, col: u32, k: vec3<u32>) -> Sums {
    let c = id - s.first; // ids below `first` wrap to large values: one comparison
    if c < s.alphabet && l < s.max_len {
        let r = row(c, l, col);
        return Sums(acc.a + table[r], acc.b + table[r + k.x], acc.c + table[r + k.y], acc.d + table[r + k.z]);
    }
    return acc;
}

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let thread = gid.x + gid.y * nwg.x * 64u;
    let groups = (s.dim4 + 3u) / 4u;
    let string = thread / groups;
    let col = (thread % groups) * 4u;
    if string >= s.batch {
        return;
    }
    // The last group of a width that is not a multiple of 16 has fewer than four vec4s:
    // its others re-read the last one (in bounds) and are not stored.
    let last = s.dim4 - 1u - col;
    let k = min(vec3(1u, 2u, 3u), vec3(last));
    let o = string * s.dim4 + col;
    var acc: Sums;
    if s.accumulate == 1u {
        acc = Sums(out[o], out[o + k.x], out[o + k.y], out[o + k.z]);
    } else {
        acc = Sums(bias4(col), bias4(col + k.x), bias4(col + k.y), bias4(col + k.z));
    }
    let first_quad = starts[string] / 4u;
    let quads = (places(string) + 3u) / 4u;
    for (var q = 0u; q < quads; q++) {
        let four = id_quads[first_quad + q];
        let l = 4u * q;
        acc = add_rows(acc, four.x, l, col, k);
        acc = add_rows(acc, four.y, l + 1u, col, k);
        acc = add_rows(acc, four.z, l + 2u, col, k);
        acc = add_rows(acc, four.w, l + 3u, col, k);
    }
    out[o] = acc.a;
    if last >= 1u {
        out[o + 1u] = acc.b;
    }
    if last >= 2u {
        out[o + 2u] = acc.c;
    }
    if last >= 3u {
        out[o + 3u] = acc.d;
    }
}

// The bias at vec4 `col`.
fn bias4(col: u32) -> vec4<f32> {
    let at = s.bias + 4u * col;
    return vec4(bias[at], bias[at + 1u], bias[at + 2u], bias[at + 3u]);
}

@group(0) @binding(3) var<storage, read> d_out: array<vec4<f32>>;        // [batch, dim4]
@group(0) @binding(4) var<storage, read_write> d_table: array<vec4<f32>>; // as `table`

@compute @workgroup_size(64)
fn d_table_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let thread = gid.x + gid.y * nwg.x * 64u;
    let l = thread / s.dim4;
    let col = thread % s.dim4;
    if l >= s.max_len {
        return;
    }
    for (var c = 0u; c < s.alphabet; c++) {
        d_table[row(c, l, col)] = vec4<f32>();
    }
    for (var string = 0u; string < s.batch; string++) {
        if l < places(string) {
            let id = ids[starts[string] + l];
            if id < s.alphabet {
                d_table[row(id, l, col)] += d_out[string * s.dim4 + col];
            }
        }
    }
}

@group(0) @binding(1) var<storage, read> d_embeddings: array<vec4<f32>>;  // d_out
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(64)
fn d_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let col = gid.x + gid.y * nwg.x * 64u;
    if col >= s.dim4 {
        return;
    }
    var acc = vec4<f32>();
    for (var string = 0u; string < s.batch; string++) {
        acc += d_embeddings[string * s.dim4 + col];
    }
    for (var i = 0u; i < 4u; i++) {
        grads[s.bias + 4u * col + i] = acc[i];
    }
}
