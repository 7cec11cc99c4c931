//! The file readers never panic and never allocate far beyond the file's size: the
//! index, model (.safetensors) and PyTorch (.pth) readers are fed thousands of corrupted
//! copies of valid files (truncations at and around every structural boundary, flipped
//! bits, huge lengths and counts, runs of 0xFF), each of which must load or fail with an
//! error. `MEGASHTEIN_FUZZ_CASES=N` sets the cases per reader (default 3,000; the long
//! run is 1,000,000).
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use megashtein_gpu::input::Line;
use megashtein_gpu::model::{pth, weights::Weights};
use megashtein_gpu::search::index::{HEADER_LEN, Index, IndexWriter, Precision};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Counts live heap bytes and their peak, to bound what a corrupt file makes us allocate.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One reader at a time, so the peak is that reader's.
static SERIAL: Mutex<()> = Mutex::new(());

fn cases() -> usize {
    std::env::var("MEGASHTEIN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Corrupted copies of `valid`, made one at a time (a long run never holds them all):
/// truncations at and next to each boundary, a 0xFF run at each, then a seeded mix of bit flips, huge
/// little-endian numbers written at boundaries and aligned header offsets, 0xFF runs and
/// random truncations.
struct Mutations<'a> {
    valid: &'a [u8],
    cuts: Vec<usize>,
    boundaries: &'a [usize],
    rng: StdRng,
}

impl<'a> Mutations<'a> {
    fn new(valid: &'a [u8], boundaries: &'a [usize], seed: u64) -> Self {
        let cuts = boundaries
            .iter()
            .flat_map(|&b| [b.saturating_sub(1), b, b + 1])
            .filter(|&at| at < valid.len())
            .collect();
        Mutations {
            valid,
            cuts,
            boundaries,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn case(&mut self, i: usize) -> (String, Vec<u8>) {
        if let Some(&at) = self.cuts.get(i) {
            return (format!("cut at {at}"), self.valid[..at].to_vec());
        }
        // Then a 0xFF run at each boundary (lengths and counts at their largest).
        if let Some(&at) = self.boundaries.get(i - self.cuts.len()) {
            let mut v = self.valid.to_vec();
            let end = (at + 16).min(v.len());
            v[at.min(end)..end].fill(0xFF);
            return (format!("0xFF run at {at}"), v);
        }
        let (rng, boundaries) = (&mut self.rng, self.boundaries);
        let mut v = self.valid.to_vec();
        let huge: [u64; 6] = [u64::MAX, u64::MAX / 2, 1 << 40, u32::MAX as u64, 1 << 31, 0];
        let name = match rng.random_range(0..4) {
            0 => {
                // Mostly in the first 4 KiB, where the structure is.
                let span = if rng.random_bool(0.7) {
                    v.len().min(4096)
                } else {
                    v.len()
                };
                let bit = rng.random_range(0..span * 8);
                v[bit / 8] ^= 1 << (bit % 8);
                format!("bit {bit} flipped")
            }
            1 => {
                let at = if rng.random_bool(0.5) && !boundaries.is_empty() {
                    boundaries[rng.random_range(0..boundaries.len())]
                } else {
                    4 * rng.random_range(0..v.len().min(512) / 4)
                };
                let at = at.min(v.len() - 1);
                let value = huge[rng.random_range(0..huge.len())];
                let width = if rng.random_bool(0.5) { 8 } else { 4 };
                let end = (at + width).min(v.len());
                v[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
                format!("{value} written at {at}")
            }
            2 => {
                let at = rng.random_range(0..v.len());
                let end = (at + 16).min(v.len());
                v[at..end].fill(0xFF);
                format!("0xFF run at {at}")
            }
            _ => {
                let at = rng.random_range(0..v.len());
                v.truncate(at);
                format!("cut at {at}")
            }
        };
        (name, v)
    }
}

/// Feed `cases()` mutations of `valid` to `load`: none may panic, and none may raise the
/// heap's peak by more than a few times the input's size.
fn check_reader(what: &str, valid: &[u8], boundaries: &[usize], load: impl Fn(&[u8]) -> bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(load(valid), "{what}: the valid file does not load");
    let mut loaded = 0;
    let n = cases();
    let mut mutations = Mutations::new(valid, boundaries, what.len() as u64);
    for i in 0..n {
        let (name, bytes) = mutations.case(i);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&bytes)));
        let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        let ok = result.unwrap_or_else(|_| panic!("{what}: {name}: the reader panicked"));
        loaded += usize::from(ok);
        let bound = 4 * bytes.len() + (8 << 20);
        assert!(
            grew <= bound,
            "{what}: {name}: {grew} bytes allocated for a {}-byte file",
            bytes.len()
        );
    }
    eprintln!("{what}: {n} corrupted inputs, {loaded} still valid, no panic");
}

fn model_bytes() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors")).unwrap()
}

#[test]
fn model_reader_survives_corruption() {
    let valid = model_bytes();
    let header_len = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    // The header's end and every tensor's data offsets.
    let header: serde_json::Value = serde_json::from_slice(&valid[8..8 + header_len]).unwrap();
    let mut boundaries = vec![0, 8, 8 + header_len];
    for (_, t) in header.as_object().unwrap() {
        if let Some(offsets) = t.get("data_offsets") {
            for o in offsets.as_array().unwrap() {
                boundaries.push(8 + header_len + o.as_u64().unwrap() as usize);
            }
        }
    }
    check_reader("model", &valid, &boundaries, |b| {
        Weights::from_safetensors(b, "fuzz").is_ok()
    });
}

#[test]
fn pth_reader_survives_corruption() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/megashtein_trained_model.pth");
    let valid = std::fs::read(path).unwrap();
    // Zip records: local headers, central directory entries, the end record.
    let boundaries: Vec<usize> = valid
        .windows(4)
        .enumerate()
        .filter(|(_, w)| matches!(*w, b"PK\x03\x04" | b"PK\x01\x02" | b"PK\x05\x06"))
        .flat_map(|(i, _)| {
            [
                i,
                i + 10,
                i + 11,
                i + 18,
                i + 20,
                i + 22,
                i + 24,
                i + 26,
                i + 28,
                i + 42,
            ]
        })
        .collect();
    check_reader("pth", &valid, &boundaries, |b| {
        pth::read_state_dict_bytes(b, "fuzz").is_ok()
    });
}

#[test]
fn index_reader_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("valid.idx");
    let mut writer = IndexWriter::create(&path, &"a".repeat(64), 0.25, Precision::F16).unwrap();
    let lines: Vec<Line> = (0..20)
        .map(|i| Line {
            number: 2 * i + 1,
            text: format!("string number {i}").into_bytes(),
        })
        .collect();
    let embeddings: Vec<f32> = (0..20 * 80).map(|i| i as f32 / 100.0).collect();
    writer.push(&lines, &embeddings).unwrap();
    writer.finish().unwrap();
    let valid = std::fs::read(&path).unwrap();
    // Every header field, then each section's start.
    let mut boundaries: Vec<usize> = (0..=HEADER_LEN).step_by(4).collect();
    for field in [104, 120, 128, 136] {
        boundaries.push(u64::from_le_bytes(valid[field..field + 8].try_into().unwrap()) as usize);
    }
    let case = dir.path().join("case.idx");
    // Half the cases keep their checksums valid, so corruption reaches the structural
    // checks behind them.
    let flip = std::sync::atomic::AtomicBool::new(false);
    check_reader("index", &valid, &boundaries, |b| {
        let mut bytes = b.to_vec();
        if !flip.fetch_xor(true, Ordering::Relaxed) && bytes.len() >= HEADER_LEN {
            let body = crc32fast::hash(&bytes[HEADER_LEN..]);
            bytes[160..164].copy_from_slice(&body.to_le_bytes());
            let head = crc32fast::hash(&bytes[..252]);
            bytes[252..256].copy_from_slice(&head.to_le_bytes());
        }
        std::fs::write(&case, &bytes).unwrap();
        Index::open(&case).is_ok_and(|index| {
            // A loaded index must answer for every row without panicking.
            (0..index.len()).all(|i| index.string(i).len() < bytes.len() && index.line(i) > 0)
                && index.embeddings_f32().len() == index.len() * index.dim()
        })
    });
}
