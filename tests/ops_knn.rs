//! The kNN kernels (tiled screen + exact merge) against a CPU brute force: chunk, tile
//! and slice boundaries, every k bucket edge, k > N, N = 0 and 1, duplicates and ties
//! (smaller row first), the overflow rerun, plan reuse, f32 and packed f16; and the same
//! for Hamming distance over byte codes padded with 0x80, as CGK codes of short strings
//! are.
mod common;

use common::{gpu, rng};
use half::f16;
use megashtein_gpu::ops::TileReads;
use megashtein_gpu::ops::knn::{Database, Knn, KnnPlan, MAX_CODE_WIDTH, MAX_K, Neighbor};
use megashtein_gpu::reference;
use rand::Rng;

fn knn() -> &'static Knn {
    static KNN: std::sync::OnceLock<Knn> = std::sync::OnceLock::new();
    KNN.get_or_init(|| Knn::new(&gpu().gpu))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
    bytemuck::cast_slice(&h).to_vec()
}

/// `v` as a database stores it: f16 or f32 bytes.
fn stored_bytes(v: &[f32], f16: bool) -> Vec<u8> {
    if f16 { f16_bytes(v) } else { f32_bytes(v) }
}

/// Values on a coarse grid: exact in f16 and f32, and their squared distances are exact
/// sums, so ties are real ties and the order must match the reference exactly.
fn grid_data(r: &mut impl Rng, n: usize, dim: usize) -> Vec<f32> {
    (0..n * dim)
        .map(|_| r.random_range(-4i32..=4) as f32 * 0.5)
        .collect()
}

fn search(db: &Database, queries: &[f32], k: usize) -> Vec<Vec<Neighbor>> {
    knn().search(&gpu().gpu, db, queries, k).unwrap()
}

fn search_codes(db: &Database, queries: &[u8], k: usize) -> Vec<Vec<Neighbor>> {
    knn().search(&gpu().gpu, db, queries, k).unwrap()
}

fn assert_exact(got: &[Vec<Neighbor>], want: &[Vec<(f64, usize)>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: query count");
    for (q, (g, w)) in got.iter().zip(want).enumerate() {
        let g: Vec<(f64, usize)> = g.iter().map(|n| (f64::from(n.distance), n.row)).collect();
        assert_eq!(&g, w, "{what}: query {q}");
    }
}

#[test]
fn exact_top_k_across_chunks_k_and_sizes() {
    let t = gpu();
    let mut r = rng(11);
    let dim = 6;
    for &(n, queries, k, chunk) in &[
        (0usize, 3usize, 5usize, None),
        (1, 2, 1, None),
        (1, 2, 7, None),
        (5, 4, 3, Some(2)),
        (100, 7, 10, Some(37)),
        (1000, 5, 64, Some(300)),
        (1000, 3, 65, None),
        (3000, 9, 200, Some(1024)),
        (5000, 2, 1, Some(4999)),
        (1500, 2, MAX_K, Some(700)),
        // Several slice lists per chunk, merged on the GPU.
        (6000, 3, 10, None),
        (9000, 2, 150, Some(8000)),
    ] {
        let data = grid_data(&mut r, n, dim);
        let qs = grid_data(&mut r, queries, dim);
        for f16 in [false, true] {
            let bytes = stored_bytes(&data, f16);
            let db = Database::upload(&t.gpu, &bytes, dim, f16, chunk).unwrap();
            let got = search(&db, &qs, k);
            let want = reference::knn(&data, &qs, dim, k);
            assert_exact(
                &got,
                &want,
                &format!("n={n} q={queries} k={k} chunk={chunk:?} f16={f16}"),
            );
        }
    }
}

/// The scan's register tile with the shared reader (every GPU's; CI's lavapipe runs the
/// subgroup reader in every other test) finds the exact neighbours too, across query and
/// row tiles and both storage types.
#[test]
fn the_shared_tile_reader_finds_the_same_neighbours() {
    let t = gpu();
    // CI's lavapipe (Vulkan; through GL it has no subgroups) tests the other reader.
    if t.gpu.info.name.contains("llvmpipe") && t.gpu.info.backend == wgpu::Backend::Vulkan {
        assert_eq!(TileReads::for_device(&t.gpu), TileReads::Subgroup);
    }
    let shared = Knn::with_tile_reads(TileReads::Shared);
    let mut r = rng(17);
    let (n, queries, dim, k) = (700, 40, 12, 9);
    let data = grid_data(&mut r, n, dim);
    let qs = grid_data(&mut r, queries, dim);
    let want = reference::knn(&data, &qs, dim, k);
    for f16 in [false, true] {
        let bytes = stored_bytes(&data, f16);
        let db = Database::upload(&t.gpu, &bytes, dim, f16, None).unwrap();
        let got = shared.search(&t.gpu, &db, &qs, k).unwrap();
        assert_exact(&got, &want, &format!("shared reader, f16={f16}"));
    }
}

#[test]
fn duplicates_and_ties_go_to_the_smaller_row() {
    let t = gpu();
    let dim = 4;
    // Row i holds vector (i % 3): many exact duplicates at three distances.
    let data: Vec<f32> = (0..300).flat_map(|i| [(i % 3) as f32; 4]).collect();
    let db = Database::upload(&t.gpu, &f32_bytes(&data), dim, false, Some(128)).unwrap();
    let got = search(&db, &[0.0; 4], 5);
    let rows: Vec<usize> = got[0].iter().map(|n| n.row).collect();
    assert_eq!(rows, vec![0, 3, 6, 9, 12]);
    assert!(got[0].iter().all(|n| n.distance == 0.0));
    let got = search(&db, &[1.0; 4], 101);
    assert_eq!(got[0].len(), 101);
    assert_eq!(got[0][99].row, 298);
    assert_eq!(
        got[0][100],
        Neighbor {
            distance: 4.0,
            row: 0
        }
    );
}

#[test]
fn random_float_data_matches_within_rounding() {
    let t = gpu();
    let mut r = rng(12);
    let (n, dim, k) = (2000, 80, 10);
    let data: Vec<f32> = (0..n * dim).map(|_| r.random_range(-3.0f32..3.0)).collect();
    let qs: Vec<f32> = (0..4 * dim).map(|_| r.random_range(-3.0f32..3.0)).collect();
    for f16 in [false, true] {
        let bytes = stored_bytes(&data, f16);
        // The reference sees exactly the values the GPU sees.
        let seen: Vec<f32> = if f16 {
            data.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
        } else {
            data.clone()
        };
        let db = Database::upload(&t.gpu, &bytes, dim, f16, None).unwrap();
        let got = search(&db, &qs, k);
        let want = reference::knn(&seen, &qs, dim, k);
        for (q, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), k);
            let query = &qs[q * dim..][..dim];
            for (gn, &(wd, _)) in g.iter().zip(w) {
                // Each reported distance is right for its row, and the sorted distances
                // agree with the brute force, up to f32 summation error.
                let own = reference::squared_distance(&seen[gn.row * dim..][..dim], query);
                let got = f64::from(gn.distance);
                assert!(
                    (got - own).abs() <= 1e-4 * (1.0 + own),
                    "row {}: {got} vs {own}",
                    gn.row
                );
                assert!((got - wd).abs() <= 1e-4 * (1.0 + wd), "{got} vs {wd}");
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let t = gpu();
    let db = Database::upload(&t.gpu, &f32_bytes(&[0.0; 8]), 4, false, None).unwrap();
    assert!(knn().search(&t.gpu, &db, &[0.0f32; 4], 0).is_err());
    assert!(knn().search(&t.gpu, &db, &[0.0f32; 4], MAX_K + 1).is_err());
    assert!(knn().search(&t.gpu, &db, &[0.0f32; 3], 1).is_err());
    assert!(Database::upload(&t.gpu, &[0u8; 6], 4, false, None).is_err());
    assert!(Database::upload(&t.gpu, &[0u8; 6], 3, true, None).is_err());
}

/// k near the 1,024 limit over long databases. The old kernel's lists came back unwritten
/// on lavapipe at k > 960 over slices of ~10,000+ rows: llvmpipe stops every loop of an
/// invocation once their iterations together pass 65,535 (LP_MAX_TGSI_LOOP_ITERATIONS,
/// shared by all loops of a shader), and that shape needed ~61,000 per invocation plus
/// its setup. Today's select pass is bounded far below (topk.wgsl); keep the shapes.
#[test]
fn large_k_over_several_slices() {
    let t = gpu();
    let mut r = rng(13);
    for &(n, k, dim) in &[
        (16_000usize, 961usize, 80usize),
        (40_000, MAX_K, 80),
        (20_000, 1000, 4),
    ] {
        let data = grid_data(&mut r, n, dim);
        let qs = grid_data(&mut r, 2, dim);
        let db = Database::upload(&t.gpu, &f32_bytes(&data), dim, false, None).unwrap();
        let got = search(&db, &qs, k);
        let want = reference::knn(&data, &qs, dim, k);
        assert_exact(&got, &want, &format!("n={n} k={k} dim={dim}"));
    }
}

/// The same queries through the packed-f16 and f32 paths of `data`, against the brute
/// force on the values the GPU sees (grid values are exact in both).
fn check_both_precisions(data: &[f32], qs: &[f32], dim: usize, k: usize, chunk: Option<usize>) {
    let t = gpu();
    let want = reference::knn(data, qs, dim, k);
    for f16 in [false, true] {
        let bytes = stored_bytes(data, f16);
        let db = Database::upload(&t.gpu, &bytes, dim, f16, chunk).unwrap();
        let got = search(&db, qs, k);
        let what = format!(
            "n={} q={} k={k} dim={dim} chunk={chunk:?} f16={f16}",
            data.len() / dim,
            qs.len() / dim
        );
        assert_exact(&got, &want, &what);
    }
}

/// Query counts around the 32-query tile, row counts around the 256-row tile and the
/// slices (which double after the first), several chunks, odd widths.
#[test]
fn tile_and_slice_edges() {
    let mut r = rng(14);
    for &(n, queries, k, dim, chunk) in &[
        (255usize, 31usize, 5usize, 6usize, None),
        (256, 32, 16, 80, None),
        (257, 33, 17, 80, Some(256)),
        (513, 65, 3, 2, Some(257)),
        (1_279, 1, 40, 8, Some(500)),
        (3_000, 64, 10, 80, Some(1_024)),
    ] {
        let data = grid_data(&mut r, n, dim);
        let qs = grid_data(&mut r, queries, dim);
        check_both_precisions(&data, &qs, dim, k, chunk);
    }
}

/// k at every list-size bucket edge (16, 64, 256, 1,024) and one past it.
#[test]
fn every_k_bucket_edge() {
    let mut r = rng(15);
    let (n, dim) = (2_600, 6);
    let data = grid_data(&mut r, n, dim);
    let qs = grid_data(&mut r, 3, dim);
    for k in [1, 16, 17, 64, 65, 256, 257, MAX_K] {
        check_both_precisions(&data, &qs, dim, k, Some(1_700));
    }
}

/// Thousands of rows tied at a query's k-th distance overflow a slice's candidate slots;
/// the batch is searched again in short slices and the answer is still exact.
#[test]
fn tied_duplicates_overflowing_the_slots() {
    let dim = 4;
    // 20,000 copies of one vector and a few others; ties go to the smaller row.
    let mut data: Vec<f32> = (0..20_000).flat_map(|_| [1.0; 4]).collect();
    data.extend([0.0, 0.0, 0.0, 0.5, 3.0, 3.0, 3.0, 3.0]);
    let qs = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    check_both_precisions(&data, &qs, dim, 10, None);
}

/// One plan serves many searches: batches below its capacity, more queries than it holds
/// (several submits), and the same answers as a fresh search every time.
#[test]
fn a_plan_is_reused_across_batches() {
    let t = gpu();
    let mut r = rng(16);
    let (n, dim, k) = (5_000, 8, 20);
    let data = grid_data(&mut r, n, dim);
    let db = Database::upload(&t.gpu, &f32_bytes(&data), dim, false, None).unwrap();
    let plan = KnnPlan::new(&t.gpu, knn(), &db, k, 7, None).unwrap();
    assert_eq!(plan.capacity(), 7);
    for queries in [7, 3, 19, 1] {
        let qs = grid_data(&mut r, queries, dim);
        let got = plan.search(&t.gpu, &qs).unwrap();
        let want = reference::knn(&data, &qs, dim, k);
        assert_exact(&got, &want, &format!("{queries} queries through one plan"));
    }
}

/// The padding byte of CGK codes.
const PAD: u8 = 0x80;

/// `n` codes of `width` bytes from a tiny alphabet (the padding byte among it, so whole
/// padding words occur inside codes too), so that ties are common; each is padded after
/// a random used length of at most `longest` bytes: often none, often all of them.
fn random_codes(r: &mut impl Rng, n: usize, width: usize, longest: usize) -> Vec<u8> {
    let mut codes = vec![PAD; n * width];
    for code in codes.chunks_exact_mut(width) {
        let used = match r.random_range(0..4) {
            0 => 0,
            1 => longest,
            _ => r.random_range(0..=longest),
        };
        for byte in &mut code[..used] {
            *byte = [0, 1, PAD][r.random_range(0..3)];
        }
    }
    codes
}

fn upload_codes(codes: &[u8], width: usize, chunk: Option<usize>) -> Database {
    Database::upload_codes(&gpu().gpu, codes, width, chunk).unwrap()
}

/// The GPU search of `codes` against the brute force, exactly.
fn check_hamming(codes: &[u8], width: usize, queries: &[u8], k: usize, chunk: Option<usize>) {
    let db = upload_codes(codes, width, chunk);
    let got = search_codes(&db, queries, k);
    let want = reference::knn_hamming(codes, width, queries, k);
    let what = format!(
        "n={} q={} k={k} width={width} chunk={chunk:?}",
        codes.len() / width,
        queries.len() / width
    );
    assert_exact(&got, &want, &what);
}

/// Widths of one word, a few words, not a power of two, and CGK's 240 and 960; row
/// counts of 0, 1, around the 256-row tile and over several chunks and slices; query
/// counts around the 16-query tile.
#[test]
fn hamming_exact_across_widths_chunks_and_sizes() {
    let mut r = rng(21);
    for width in [4, 8, 36, 240, 960] {
        for &(n, queries, k, chunk) in &[
            (0usize, 3usize, 5usize, None),
            (1, 2, 1, None),
            (1, 2, 7, None),
            (255, 15, 5, None),
            (256, 16, 16, None),
            (257, 17, 17, Some(256)),
            (1_000, 33, 64, Some(300)),
            (6_000, 3, 10, None),
            (9_000, 2, 150, Some(8_000)),
        ] {
            let codes = random_codes(&mut r, n, width, width);
            let qs = random_codes(&mut r, queries, width, width);
            check_hamming(&codes, width, &qs, k, chunk);
        }
    }
}

/// k at every list-size bucket edge and one past it, and k above the row count.
#[test]
fn hamming_every_k_bucket_edge() {
    let mut r = rng(22);
    let width = 36;
    let codes = random_codes(&mut r, 2_600, width, width);
    let qs = random_codes(&mut r, 3, width, width);
    for k in [1, 16, 17, 64, 65, 256, 257, MAX_K] {
        check_hamming(&codes, width, &qs, k, Some(1_700));
    }
    let few = random_codes(&mut r, 300, width, width);
    check_hamming(&few, width, &qs, MAX_K, None);
}

/// Short rows against long queries and the reverse: the scan stops at the longer used
/// length of the two, never before.
#[test]
fn hamming_queries_longer_and_shorter_than_the_rows() {
    let mut r = rng(23);
    let width = 240;
    let short_rows = random_codes(&mut r, 3_000, width, 12);
    let long_rows = random_codes(&mut r, 3_000, width, width);
    let long_queries = random_codes(&mut r, 20, width, width);
    let short_queries = random_codes(&mut r, 20, width, 12);
    let mut empty_and_full = vec![PAD; 2 * width];
    empty_and_full[width..].fill(1);
    for (codes, qs) in [
        (&short_rows, &long_queries),
        (&long_rows, &short_queries),
        (&short_rows, &empty_and_full),
        (&long_rows, &empty_and_full),
    ] {
        check_hamming(codes, width, qs, 40, None);
    }
}

/// The widest codes: 256 words, distances up to all 1,024 bytes.
#[test]
fn hamming_widest_codes_count_every_byte() {
    let mut r = rng(24);
    let width = MAX_CODE_WIDTH;
    let mut codes = random_codes(&mut r, 500, width, width);
    codes.extend(vec![1; width]);
    codes.extend(vec![PAD; width]);
    let mut qs = vec![0; width];
    qs.extend(random_codes(&mut r, 2, width, width));
    check_hamming(&codes, width, &qs, 600, Some(256));
    let ones_and_zeros = [vec![1; width], vec![0; width]].concat();
    let db = upload_codes(&ones_and_zeros, width, None);
    let got = search_codes(&db, &qs[..width], 2);
    let at = |distance, row| Neighbor { distance, row };
    assert_eq!(got[0], [at(0.0, 1), at(1024.0, 0)]);
}

/// k near the limit over many slices of wide codes: the select pass's exact distances
/// and merges stay inside lavapipe's loop budget.
#[test]
fn hamming_large_k_over_several_slices() {
    let mut r = rng(25);
    let width = 960;
    let codes = random_codes(&mut r, 16_000, width, width);
    let qs = random_codes(&mut r, 2, width, width);
    check_hamming(&codes, width, &qs, MAX_K, None);
}

/// Thousands of identical codes tied at a query's k-th distance overflow a slice's
/// candidate slots (the screen keeps ties); the rerun in short slices is still exact.
#[test]
fn hamming_tied_duplicates_overflowing_the_slots() {
    let mut r = rng(26);
    let width = 8;
    let mut codes: Vec<u8> = [0, 1, 0, 1, PAD, PAD, PAD, PAD].repeat(20_000);
    codes.extend(random_codes(&mut r, 50, width, width));
    let mut qs = codes[..width].to_vec();
    qs.extend([0, 1, 0, 0, PAD, PAD, PAD, PAD]);
    qs.extend([PAD; 8]);
    check_hamming(&codes, width, &qs, 10, None);
}

/// One plan serves batches below its capacity and above it, with the brute force's
/// answers every time.
#[test]
fn hamming_plan_is_reused_across_batches() {
    let t = gpu();
    let mut r = rng(27);
    let (width, k) = (36, 20);
    let codes = random_codes(&mut r, 5_000, width, width);
    let db = upload_codes(&codes, width, None);
    let plan = KnnPlan::new(&t.gpu, knn(), &db, k, 7, None).unwrap();
    assert_eq!(plan.capacity(), 7);
    for queries in [7, 3, 19, 1] {
        let qs = random_codes(&mut r, queries, width, width);
        let got = plan.search(&t.gpu, &qs).unwrap();
        let want = reference::knn_hamming(&codes, width, &qs, k);
        assert_exact(&got, &want, &format!("{queries} queries through one plan"));
    }
}

#[test]
fn hamming_bad_arguments_are_errors() {
    let t = gpu();
    for width in [0, 6, MAX_CODE_WIDTH + 4, 2 * MAX_CODE_WIDTH] {
        let codes = vec![0u8; 2 * width];
        assert!(
            Database::upload_codes(&t.gpu, &codes, width, None).is_err(),
            "width {width}"
        );
    }
    assert!(Database::upload_codes(&t.gpu, &[0u8; 12], 8, None).is_err());
    let db = upload_codes(&[0u8; 16], 8, None);
    assert!(knn().search(&t.gpu, &db, &[0u8; 8], 1).is_ok());
    assert!(knn().search(&t.gpu, &db, &[0u8; 12], 1).is_err());
    assert!(knn().search(&t.gpu, &db, &[0u8; 4], 1).is_err());
    assert!(knn().search(&t.gpu, &db, &[0u8; 8], 0).is_err());
}
