//! Reading PyTorch `torch.save` checkpoints (the zip format of torch >= 1.6) without
//! Python and without executing pickle.
//!
//! A checkpoint is a zip archive whose entries sit in one top folder (named after the
//! file when it was saved, not always `archive/`): `data.pkl` (the pickled object),
//! `byteorder`, `version` and one raw storage per tensor buffer under `data/<key>`.
//!
//! `data.pkl` is read by a small pickle machine that knows only the opcodes of
//! protocols 2 to 5 that a state_dict needs and only the globals a state_dict names
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter`, and the `torch.*Storage` types). It never calls
//! anything: every other global or opcode is refused with an error naming it, so a
//! malicious file can do no more than fail to load.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use anyhow::{Result, anyhow, bail};

/// Largest `data.pkl` accepted (a state_dict pickle is a few KB per hundred tensors).
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// Upper bound on the values the pickle machine holds (stack, memo, containers and
/// their items): a state_dict needs a few per tensor.
const MAX_OBJECTS: usize = 1 << 23;

pub use super::state_dict::{DType, StateDict, Tensor};

/// The dtype of a legacy typed storage class (`torch.FloatStorage` -> F32).
fn dtype_of_storage_class(name: &str) -> Option<DType> {
    Some(match name {
        "DoubleStorage" => DType::F64,
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

/// Reads a `torch.save` checkpoint of a state_dict (a mapping of names to tensors).
///
/// Every failure (missing or unreadable file, not a zip, truncated or damaged archive,
/// no `data.pkl`, missing storage, malformed pickle, a global other than those a
/// state_dict needs) is an error naming the file and the reason.
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    read_checkpoint(path)
        .map_err(|e| anyhow!("cannot read PyTorch checkpoint {}: {e:#}", path.display()))
}

/// [`read_state_dict`] of a checkpoint held in memory (such as the released checkpoint
/// compiled into the binary); `source` names it in errors.
pub fn read_state_dict_bytes(bytes: &[u8], source: &str) -> Result<StateDict> {
    check_magic(&bytes[..bytes.len().min(4)])
        .and_then(|()| read_zip(Cursor::new(bytes)))
        .map_err(|e| anyhow!("cannot read PyTorch checkpoint {source}: {e:#}"))
}

fn read_checkpoint(path: &Path) -> Result<StateDict> {
    let meta = std::fs::metadata(path).map_err(|e| anyhow!("{e}"))?;
    if meta.is_dir() {
        bail!("it is a directory, not a file");
    }
    let mut file = File::open(path).map_err(|e| anyhow!("{e}"))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        let n = file.read(&mut magic[got..]).map_err(|e| anyhow!("{e}"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    check_magic(&magic[..got])?;
    file.seek(SeekFrom::Start(0)).map_err(|e| anyhow!("{e}"))?;
    read_zip(BufReader::new(file))
}

/// Refuses what is not a zip archive by its first (up to 4) bytes, naming what it is.
fn check_magic(magic: &[u8]) -> Result<()> {
    if magic.is_empty() {
        bail!("the file is empty");
    }
    if magic[0] == 0x80 && magic.len() >= 2 && magic[1] <= 5 {
        bail!(
            "this is a legacy (pre-1.6) torch.save file, not the zip format; re-save it in \
             PyTorch with torch.save(torch.load(path), path)"
        );
    }
    if &magic[..magic.len().min(2)] != b"PK" {
        bail!("not a zip archive, so not a torch.save checkpoint");
    }
    Ok(())
}

/// Reads a checkpoint from any seekable source of zip bytes.
fn read_zip<R: Read + Seek>(reader: R) -> Result<StateDict> {
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| anyhow!("damaged or truncated zip archive ({e})"))?;
    let prefix = find_prefix(&zip)?;

    // byteorder is absent in checkpoints of old PyTorch versions, which were all
    // little-endian; PyTorch itself treats a missing entry the same way.
    let byteorder_name = format!("{prefix}byteorder");
    if zip.index_for_name(&byteorder_name).is_some() {
        let order = read_entry(&mut zip, &byteorder_name, 64)?;
        let order = String::from_utf8_lossy(&order);
        match order.trim() {
            "little" => {}
            "big" => bail!(
                "the checkpoint was written on a big-endian machine; only little-endian checkpoints are supported"
            ),
            other => bail!(
                "unknown byteorder {:?} in {byteorder_name}",
                truncate(other)
            ),
        }
    }

    let pickle_name = format!("{prefix}data.pkl");
    let pickle = read_entry(&mut zip, &pickle_name, MAX_PICKLE_BYTES)?;
    let mut load = |key: &str, bytes: u64| -> Result<Vec<u8>> {
        let name = format!("{prefix}data/{key}");
        let index = zip.index_for_name(&name).ok_or_else(|| {
            anyhow!("storage {name} named by data.pkl is missing from the archive")
        })?;
        let entry = zip
            .by_index(index)
            .map_err(|e| anyhow!("cannot open {name} ({e})"))?;
        if entry.size() != bytes {
            bail!(
                "storage {name} holds {} bytes, but data.pkl says {bytes}",
                entry.size()
            );
        }
        read_all(entry, bytes, &name)
    };
    unpickle_state_dict(&pickle, &mut load).map_err(|e| anyhow!("{pickle_name}: {e:#}"))
}

/// The folder that holds `data.pkl`, with its trailing slash (or "" at the root).
fn find_prefix<R: Read + Seek>(zip: &zip::ZipArchive<R>) -> Result<String> {
    let mut found: Vec<String> = Vec::new();
    for raw in zip.file_names_raw() {
        let Some(dir) = raw.strip_suffix(b"data.pkl") else {
            continue;
        };
        let top_level = dir.is_empty()
            || (dir.ends_with(b"/") && !dir[..dir.len() - 1].contains(&b'/') && dir.len() > 1);
        if top_level {
            found.push(String::from_utf8_lossy(dir).into_owned());
        }
    }
    match found.len() {
        0 => {
            let names: Vec<String> = zip
                .file_names_raw()
                .take(5)
                .map(|n| truncate(&String::from_utf8_lossy(n)))
                .collect();
            bail!(
                "the zip archive has no data.pkl, so it is not a torch.save checkpoint \
                 (it holds {} entries{}{})",
                zip.len(),
                if names.is_empty() { "" } else { ", e.g. " },
                names.join(", ")
            )
        }
        1 => Ok(found.remove(0)),
        _ => bail!(
            "the zip archive holds several data.pkl files ({}); expected exactly one",
            found
                .iter()
                .map(|p| format!("{p}data.pkl"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The most [`read_all`] reserves before data arrives.
const RESERVE_BYTES: u64 = 1 << 20;

fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .map_err(|e| anyhow!("cannot open {name} ({e})"))?;
    if entry.size() > limit {
        bail!(
            "{name} is too large ({} bytes, limit {limit})",
            entry.size()
        );
    }
    let size = entry.size();
    read_all(entry, size, name)
}

/// Reads exactly `bytes` bytes of an entry (the zip reader checks its CRC at the end).
/// Memory follows the data that arrives, not the size the archive claims: at most
/// [`RESERVE_BYTES`] is reserved up front.
fn read_all(entry: impl Read, bytes: u64, name: &str) -> Result<Vec<u8>> {
    let cap = usize::try_from(bytes.min(RESERVE_BYTES)).expect("small");
    let mut out = Vec::new();
    out.try_reserve_exact(cap)
        .map_err(|_| anyhow!("{name} is too large ({bytes} bytes)"))?;
    entry
        .take(bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("cannot read {name}: the archive is damaged ({e})"))?;
    if out.len() as u64 != bytes {
        bail!("{name} holds {} bytes, expected {bytes}", out.len());
    }
    Ok(out)
}

/// At most 80 characters of untrusted text, escaped for a terminal.
fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------
// The pickle machine.

/// The globals a state_dict pickle may name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Result<Global> {
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", class) if class.ends_with("Storage") => match dtype_of_storage_class(class) {
                Some(dtype) => Global::Storage(dtype),
                None => bail!("unsupported tensor storage type torch.{}", truncate(class)),
            },
            _ => bail!(
                "refusing pickle global {}.{}: a state_dict needs only collections.OrderedDict, \
                 torch._utils._rebuild_tensor_v2 and torch.*Storage (nothing in the file was run)",
                truncate(module),
                truncate(name)
            ),
        })
    }

    fn name(self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::Storage(d) => format!("the {d} storage class"),
        }
    }
}

/// A pickled value. Containers live in an arena and are referred to by index, so that
/// mutation through the memo works as in Python and no value owns a deep tree (a
/// hostile pickle nesting a million tuples costs memory, not the native stack).
#[derive(Debug, Clone)]
#[allow(dead_code)] // payloads a state_dict never reads are kept for Debug
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(usize),
    List(usize),
    Dict(usize),
    Global(Global),
    Storage(usize),
    Tensor(usize),
}

impl Value {
    fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global(g) => g.name(),
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
        }
    }
}

#[derive(Debug)]
enum Container {
    Seq(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

#[derive(Debug)]
struct StorageRef {
    dtype: DType,
    key: String,
    numel: usize,
}

/// Loads storage `key` of the given byte length.
type Loader<'l> = dyn FnMut(&str, u64) -> Result<Vec<u8>> + 'l;

struct Machine<'a, 'l> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<Vec<Value>>,
    memo: HashMap<u32, Value>,
    containers: Vec<Container>,
    /// Values held inside containers.
    items: usize,
    storages: Vec<StorageRef>,
    loaded: HashMap<String, (DType, Rc<Vec<u8>>)>,
    tensors: Vec<Tensor>,
    load: &'a mut Loader<'l>,
}

/// Runs a state_dict pickle; `load` fetches the raw bytes of storage `key`.
fn unpickle_state_dict(data: &[u8], load: &mut Loader<'_>) -> Result<StateDict> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        containers: Vec::new(),
        items: 0,
        storages: Vec::new(),
        loaded: HashMap::new(),
        tensors: Vec::new(),
        load,
    };
    let top = m.run()?;
    m.into_state_dict(top)
}

macro_rules! opcodes {
    ($($name:ident = $code:expr),* $(,)?) => {
        #[allow(dead_code)]
        mod op { $(pub const $name: u8 = $code;)* }
        fn opcode_name(code: u8) -> &'static str {
            match code { $($code => stringify!($name),)* _ => "an unknown opcode" }
        }
    };
}

opcodes! {
    MARK = b'(', STOP = b'.', POP = b'0', POP_MARK = b'1', DUP = b'2', FLOAT = b'F',
    INT = b'I', BININT = b'J', BININT1 = b'K', LONG = b'L', BININT2 = b'M', NONE = b'N',
    PERSID = b'P', BINPERSID = b'Q', REDUCE = b'R', STRING = b'S', BINSTRING = b'T',
    SHORT_BINSTRING = b'U', UNICODE = b'V', BINUNICODE = b'X', APPEND = b'a', BUILD = b'b',
    GLOBAL = b'c', DICT = b'd', EMPTY_DICT = b'}', APPENDS = b'e', GET = b'g', BINGET = b'h',
    INST = b'i', LONG_BINGET = b'j', LIST = b'l', EMPTY_LIST = b']', OBJ = b'o', PUT = b'p',
    BINPUT = b'q', LONG_BINPUT = b'r', SETITEM = b's', TUPLE = b't', EMPTY_TUPLE = b')',
    SETITEMS = b'u', BINFLOAT = b'G', PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83,
    EXT4 = 0x84, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89,
    LONG1 = 0x8a, LONG4 = 0x8b, BINBYTES = b'B', SHORT_BINBYTES = b'C',
    SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e, EMPTY_SET = 0x8f,
    ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94,
    FRAME = 0x95, BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
}

impl<'a> Machine<'a, '_> {
    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let code = self.byte()?;
            match self.step(code)? {
                Some(result) => return Ok(result),
                None => {
                    let held =
                        self.stack.len() + self.memo.len() + self.containers.len() + self.items;
                    if held > MAX_OBJECTS {
                        bail!("the pickle builds too many objects (at byte {at})");
                    }
                }
            }
        }
    }

    /// Executes one opcode; returns the result at STOP.
    fn step(&mut self, code: u8) -> Result<Option<Value>> {
        let at = self.pos - 1;
        match code {
            op::PROTO => {
                let v = self.byte()?;
                if v > 5 {
                    bail!("unsupported pickle protocol {v}");
                }
            }
            op::FRAME => {
                self.take(8)?;
            }
            op::STOP => {
                let v = self.pop()?;
                return Ok(Some(v));
            }
            op::MARK => {
                let saved = std::mem::take(&mut self.stack);
                self.marks.push(saved);
            }
            op::POP => {
                if self.stack.is_empty() {
                    self.pop_mark()?;
                } else {
                    self.pop()?;
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            op::NONE => self.stack.push(Value::None),
            op::NEWTRUE => self.stack.push(Value::Bool(true)),
            op::NEWFALSE => self.stack.push(Value::Bool(false)),
            op::BININT => {
                let b = self.take(4)?;
                self.stack.push(Value::Int(
                    i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
                ));
            }
            op::BININT1 => {
                let v = self.byte()?;
                self.stack.push(Value::Int(v as i64));
            }
            op::BININT2 => {
                let b = self.take(2)?;
                self.stack
                    .push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64));
            }
            op::LONG1 => {
                let n = self.byte()? as usize;
                let v = self.long(n)?;
                self.stack.push(Value::Int(v));
            }
            op::LONG4 => {
                let n = self.len32()?;
                let v = self.long(n)?;
                self.stack.push(Value::Int(v));
            }
            op::BINFLOAT => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.stack.push(Value::Float(f64::from_be_bytes(a)));
            }
            op::SHORT_BINUNICODE => {
                let n = self.byte()? as usize;
                let s = self.utf8(n)?;
                self.stack.push(Value::Str(s));
            }
            op::BINUNICODE | op::BINSTRING => {
                let n = self.len32()?;
                let s = self.utf8(n)?;
                self.stack.push(Value::Str(s));
            }
            op::SHORT_BINSTRING => {
                let n = self.byte()? as usize;
                let s = self.utf8(n)?;
                self.stack.push(Value::Str(s));
            }
            op::BINUNICODE8 => {
                let n = self.len64()?;
                let s = self.utf8(n)?;
                self.stack.push(Value::Str(s));
            }
            op::SHORT_BINBYTES => {
                let n = self.byte()? as usize;
                let b: Rc<[u8]> = self.take(n)?.into();
                self.stack.push(Value::Bytes(b));
            }
            op::BINBYTES => {
                let n = self.len32()?;
                let b: Rc<[u8]> = self.take(n)?.into();
                self.stack.push(Value::Bytes(b));
            }
            op::BINBYTES8 => {
                let n = self.len64()?;
                let b: Rc<[u8]> = self.take(n)?.into();
                self.stack.push(Value::Bytes(b));
            }
            op::EMPTY_TUPLE => {
                let v = self.new_container(Container::Seq(Vec::new()));
                self.stack.push(Value::Tuple(v));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (code - op::TUPLE1 + 1) as usize;
                if self.stack.len() < n {
                    bail!(
                        "{} at byte {at} needs {n} values on the stack",
                        opcode_name(code)
                    );
                }
                let items = self.stack.split_off(self.stack.len() - n);
                let v = self.new_container(Container::Seq(items));
                self.stack.push(Value::Tuple(v));
            }
            op::TUPLE => {
                let items = self.pop_mark()?;
                let v = self.new_container(Container::Seq(items));
                self.stack.push(Value::Tuple(v));
            }
            op::EMPTY_LIST => {
                let v = self.new_container(Container::Seq(Vec::new()));
                self.stack.push(Value::List(v));
            }
            op::LIST => {
                let items = self.pop_mark()?;
                let v = self.new_container(Container::Seq(items));
                self.stack.push(Value::List(v));
            }
            op::APPEND => {
                let item = self.pop()?;
                let list = self.list_on_top(code)?;
                if let Some(Container::Seq(items)) = self.containers.get_mut(list) {
                    items.push(item);
                    self.items += 1;
                }
            }
            op::APPENDS => {
                let new = self.pop_mark()?;
                self.items += new.len();
                let list = self.list_on_top(code)?;
                if let Some(Container::Seq(items)) = self.containers.get_mut(list) {
                    items.extend(new);
                }
            }
            op::EMPTY_DICT => {
                let v = self.new_container(Container::Dict(Vec::new()));
                self.stack.push(Value::Dict(v));
            }
            op::DICT => {
                let items = self.pop_mark()?;
                let pairs = pairs(items, at)?;
                let v = self.new_container(Container::Dict(pairs));
                self.stack.push(Value::Dict(v));
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                let dict = self.dict_on_top(code)?;
                if let Some(Container::Dict(items)) = self.containers.get_mut(dict) {
                    items.push((key, value));
                    self.items += 2;
                }
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                let new = pairs(items, at)?;
                self.items += 2 * new.len();
                let dict = self.dict_on_top(code)?;
                if let Some(Container::Dict(items)) = self.containers.get_mut(dict) {
                    items.extend(new);
                }
            }
            op::BINPUT => {
                let i = self.byte()? as u32;
                self.put(i)?;
            }
            op::LONG_BINPUT => {
                let b = self.take(4)?;
                self.put(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
            }
            op::MEMOIZE => {
                let i = u32::try_from(self.memo.len()).map_err(|_| anyhow!("memo overflow"))?;
                self.put(i)?;
            }
            op::BINGET => {
                let i = self.byte()? as u32;
                self.get(i, at)?;
            }
            op::LONG_BINGET => {
                let b = self.take(4)?;
                self.get(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), at)?;
            }
            op::GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                let g = Global::resolve(&module, &name)?;
                self.stack.push(Value::Global(g));
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    bail!(
                        "STACK_GLOBAL at byte {at} needs two strings, got {} and {}",
                        module.kind(),
                        name.kind()
                    );
                };
                let g = Global::resolve(module, name)?;
                self.stack.push(Value::Global(g));
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                let storage = self.persistent_load(&pid, at)?;
                self.stack.push(storage);
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let Value::Tuple(args) = args else {
                    bail!(
                        "REDUCE at byte {at} needs an argument tuple, got {}",
                        args.kind()
                    );
                };
                let Value::Global(g) = callable else {
                    bail!("REDUCE at byte {at} cannot call a {}", callable.kind());
                };
                let result = self.call(g, args, at)?;
                self.stack.push(result);
            }
            op::BUILD => {
                let state = self.pop()?;
                let obj = self.top()?;
                match (obj, &state) {
                    // An OrderedDict's attributes: a state_dict's `_metadata` (module
                    // versions), which a state_dict does not need.
                    (Value::Dict(_), Value::Dict(_) | Value::None) => {}
                    _ => bail!(
                        "BUILD at byte {at}: cannot set the state of a {} from a {}",
                        obj.kind(),
                        state.kind()
                    ),
                }
            }
            _ => bail!(
                "refusing pickle opcode {} (0x{code:02x}) at byte {at}: a state_dict does not need it",
                opcode_name(code)
            ),
        }
        Ok(None)
    }

    // --- reading the byte stream

    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| anyhow!("the pickle ends early (at byte {}, no STOP)", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                anyhow!(
                    "the pickle ends early (needs {n} bytes at byte {}, has {})",
                    self.pos,
                    self.data.len() - self.pos
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn len32(&mut self) -> Result<usize> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn len64(&mut self) -> Result<usize> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| anyhow!("length too large"))
    }

    /// A little-endian two's-complement integer of `n` bytes.
    fn long(&mut self, n: usize) -> Result<i64> {
        let at = self.pos;
        let b = self.take(n)?;
        if n > 8 {
            bail!("integer at byte {at} is wider than 64 bits");
        }
        if n == 0 {
            return Ok(0);
        }
        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
        let mut a = [fill; 8];
        a[..n].copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    fn utf8(&mut self, n: usize) -> Result<Rc<str>> {
        let at = self.pos;
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(Rc::from)
            .map_err(|_| anyhow!("string at byte {at} is not valid UTF-8"))
    }

    /// A newline-terminated line (GLOBAL's module and name).
    fn line(&mut self) -> Result<String> {
        let at = self.pos;
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .take(1024)
            .position(|&b| b == b'\n')
            .ok_or_else(|| {
                if rest.len() < 1024 {
                    anyhow!("the pickle ends early (in GLOBAL at byte {at})")
                } else {
                    anyhow!("GLOBAL at byte {at} has no line end within 1024 bytes")
                }
            })?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    // --- the stack and memo

    fn pop(&mut self) -> Result<Value> {
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("stack underflow at byte {}", self.pos.saturating_sub(1)))
    }

    fn top(&self) -> Result<&Value> {
        self.stack
            .last()
            .ok_or_else(|| anyhow!("stack underflow at byte {}", self.pos.saturating_sub(1)))
    }

    /// The values since the last MARK; restores the stack below it.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let below = self.marks.pop().ok_or_else(|| {
            anyhow!(
                "no MARK on the stack at byte {}",
                self.pos.saturating_sub(1)
            )
        })?;
        Ok(std::mem::replace(&mut self.stack, below))
    }

    fn put(&mut self, i: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn get(&mut self, i: u32, at: usize) -> Result<()> {
        let v = self
            .memo
            .get(&i)
            .ok_or_else(|| anyhow!("memo entry {i} read at byte {at} was never written"))?
            .clone();
        self.stack.push(v);
        Ok(())
    }

    fn new_container(&mut self, c: Container) -> usize {
        self.items += match &c {
            Container::Seq(v) => v.len(),
            Container::Dict(v) => 2 * v.len(),
        };
        self.containers.push(c);
        self.containers.len() - 1
    }

    fn list_on_top(&self, code: u8) -> Result<usize> {
        match self.top()? {
            Value::List(i) => Ok(*i),
            other => bail!("{} needs a list, got {}", opcode_name(code), other.kind()),
        }
    }

    fn dict_on_top(&self, code: u8) -> Result<usize> {
        match self.top()? {
            Value::Dict(i) => Ok(*i),
            other => bail!("{} needs a dict, got {}", opcode_name(code), other.kind()),
        }
    }

    fn seq(&self, i: usize) -> &[Value] {
        match self.containers.get(i) {
            Some(Container::Seq(items)) => items,
            _ => &[],
        }
    }

    fn dict_len(&self, i: usize) -> usize {
        match self.containers.get(i) {
            Some(Container::Dict(items)) => items.len(),
            _ => 0,
        }
    }

    // --- the few things a state_dict pickle does

    /// `('storage', storage_type, key, location, numel)`.
    fn persistent_load(&mut self, pid: &Value, at: usize) -> Result<Value> {
        let Value::Tuple(t) = pid else {
            bail!(
                "persistent id at byte {at} is a {}, expected a tuple",
                pid.kind()
            );
        };
        let items = self.seq(*t);
        let [
            Value::Str(tag),
            Value::Global(Global::Storage(dtype)),
            Value::Str(key),
            _location,
            Value::Int(numel),
        ] = items
        else {
            bail!(
                "persistent id at byte {at} is not ('storage', torch.<Type>Storage, key, location, numel)"
            );
        };
        if &**tag != "storage" {
            bail!(
                "persistent id at byte {at} has tag {:?}, expected 'storage'",
                truncate(tag)
            );
        }
        let numel = usize::try_from(*numel)
            .map_err(|_| anyhow!("storage {} at byte {at} has a negative size", truncate(key)))?;
        let storage = StorageRef {
            dtype: *dtype,
            key: key.to_string(),
            numel,
        };
        self.storages.push(storage);
        Ok(Value::Storage(self.storages.len() - 1))
    }

    fn call(&mut self, g: Global, args: usize, at: usize) -> Result<Value> {
        let args = self.seq(args).to_vec();
        match g {
            Global::OrderedDict => {
                if !args.is_empty() {
                    bail!("collections.OrderedDict called with arguments at byte {at}");
                }
                let v = self.new_container(Container::Dict(Vec::new()));
                Ok(Value::Dict(v))
            }
            Global::RebuildParameter => match args.as_slice() {
                [t @ Value::Tensor(_), Value::Bool(_), Value::Dict(hooks)] => {
                    if self.dict_len(*hooks) != 0 {
                        bail!(
                            "a parameter at byte {at} has backward hooks, which are not supported"
                        );
                    }
                    Ok(t.clone())
                }
                _ => {
                    bail!("_rebuild_parameter at byte {at} expects (tensor, requires_grad, hooks)")
                }
            },
            Global::RebuildTensorV2 => self.rebuild_tensor(&args, at),
            Global::Storage(_) => bail!("{} cannot be called (at byte {at})", g.name()),
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    /// backward_hooks[, metadata])`.
    fn rebuild_tensor(&mut self, args: &[Value], at: usize) -> Result<Value> {
        let (storage, offset, size, stride, hooks) = match args {
            [
                Value::Storage(s),
                Value::Int(o),
                Value::Tuple(size),
                Value::Tuple(stride),
                Value::Bool(_),
                hooks,
            ]
            | [
                Value::Storage(s),
                Value::Int(o),
                Value::Tuple(size),
                Value::Tuple(stride),
                Value::Bool(_),
                hooks,
                _,
            ] => (*s, *o, *size, *stride, hooks),
            _ => bail!(
                "_rebuild_tensor_v2 at byte {at} expects (storage, offset, size, stride, \
                 requires_grad, hooks[, metadata])"
            ),
        };
        match hooks {
            Value::Dict(h) if self.dict_len(*h) == 0 => {}
            Value::Dict(_) => {
                bail!("a tensor at byte {at} has backward hooks, which are not supported")
            }
            other => bail!(
                "tensor hooks at byte {at} are a {}, expected a dict",
                other.kind()
            ),
        }
        let offset =
            usize::try_from(offset).map_err(|_| anyhow!("negative storage offset at byte {at}"))?;
        let size = self.usizes(size, "size", at)?;
        let stride = self.usizes(stride, "stride", at)?;
        if size.len() != stride.len() {
            bail!(
                "tensor at byte {at} has {} sizes but {} strides",
                size.len(),
                stride.len()
            );
        }
        let sref = self
            .storages
            .get(storage)
            .ok_or_else(|| anyhow!("unknown storage at byte {at}"))?;
        let (dtype, key, numel) = (sref.dtype, sref.key.clone(), sref.numel);
        let bytes = match self.loaded.get(&key) {
            Some((d, b)) => {
                if *d != dtype {
                    bail!(
                        "storage data/{} is used as both {d} and {dtype}",
                        truncate(&key)
                    );
                }
                b.clone()
            }
            None => {
                let len = (numel as u64)
                    .checked_mul(dtype.size() as u64)
                    .ok_or_else(|| anyhow!("storage data/{} is too large", truncate(&key)))?;
                let b = Rc::new((self.load)(&key, len)?);
                self.loaded.insert(key.clone(), (dtype, b.clone()));
                b
            }
        };
        let data = materialize(&bytes, dtype, offset, &size, &stride)
            .map_err(|e| anyhow!("tensor at byte {at} (storage data/{}): {e}", truncate(&key)))?;
        self.tensors.push(Tensor {
            dtype,
            shape: size,
            data,
        });
        Ok(Value::Tensor(self.tensors.len() - 1))
    }

    fn usizes(&self, tuple: usize, what: &str, at: usize) -> Result<Vec<usize>> {
        self.seq(tuple)
            .iter()
            .map(|v| match v {
                Value::Int(i) => usize::try_from(*i)
                    .map_err(|_| anyhow!("tensor {what} at byte {at} has a negative entry")),
                other => bail!(
                    "tensor {what} at byte {at} holds a {}, expected ints",
                    other.kind()
                ),
            })
            .collect()
    }

    /// The pickle's result, which must be a dict of names to tensors.
    fn into_state_dict(mut self, top: Value) -> Result<StateDict> {
        let Value::Dict(d) = top else {
            bail!(
                "the pickle holds a {}, not a state_dict (a dict of tensors)",
                top.kind()
            );
        };
        let items = match self.containers.get_mut(d) {
            Some(Container::Dict(items)) => std::mem::take(items),
            _ => Vec::new(),
        };
        let mut out = StateDict::new();
        for (key, value) in items {
            let Value::Str(name) = key else {
                bail!(
                    "the state_dict has a {} key, expected tensor names",
                    key.kind()
                );
            };
            let Value::Tensor(t) = value else {
                bail!(
                    "state_dict entry {:?} is a {}, not a tensor (expected \
                     torch.save(model.state_dict(), path))",
                    truncate(&name),
                    value.kind()
                );
            };
            let tensor = self
                .tensors
                .get(t)
                .cloned()
                .ok_or_else(|| anyhow!("internal error: unknown tensor"))?;
            out.insert(name.to_string(), tensor);
        }
        Ok(out)
    }
}

fn pairs(items: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("odd number of dict items at byte {at}");
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Copies the view (offset, size, stride, all in elements) out of a storage into a C-order
/// buffer. Views must lie inside the storage and may not hold more elements than it.
fn materialize(
    storage: &[u8],
    dtype: DType,
    offset: usize,
    size: &[usize],
    stride: &[usize],
) -> Result<Vec<u8>> {
    let esz = dtype.size();
    let storage_numel = storage.len() / esz;
    let numel = size
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| anyhow!("tensor size overflows"))?;
    if numel == 0 {
        if offset > storage_numel {
            bail!(
                "storage offset {offset} is past the end of the storage ({storage_numel} elements)"
            );
        }
        return Ok(Vec::new());
    }
    if numel > storage_numel {
        bail!(
            "tensor of {numel} elements views a storage of {storage_numel} (expanded views are not supported)"
        );
    }
    let last = size
        .iter()
        .zip(stride)
        .try_fold(offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d))
        })
        .ok_or_else(|| anyhow!("tensor strides overflow"))?;
    if last >= storage_numel {
        bail!(
            "tensor view (offset {offset}, size {size:?}, stride {stride:?}) reaches element {last} \
             of a storage of {storage_numel}"
        );
    }
    // C-contiguous (ignoring dimensions of size 1): one slice.
    let mut expect = 1usize;
    let mut contiguous = true;
    for (&n, &s) in size.iter().zip(stride).rev() {
        if n != 1 && s != expect {
            contiguous = false;
            break;
        }
        expect *= n;
    }
    if contiguous {
        return Ok(storage[offset * esz..(offset + numel) * esz].to_vec());
    }
    let mut out = Vec::with_capacity(numel * esz);
    let mut index = vec![0usize; size.len()];
    for _ in 0..numel {
        let elem = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&storage[elem * esz..(elem + 1) * esz]);
        for d in (0..size.len()).rev() {
            index[d] += 1;
            if index[d] < size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny pickle writer for hand-made test pickles.
    #[derive(Default)]
    struct P(Vec<u8>);

    impl P {
        fn op(mut self, code: u8) -> Self {
            self.0.push(code);
            self
        }
        fn raw(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }
        fn global(self, module: &str, name: &str) -> Self {
            self.op(op::GLOBAL)
                .raw(format!("{module}\n{name}\n").as_bytes())
        }
        fn str(self, s: &str) -> Self {
            self.op(op::BINUNICODE)
                .raw(&(s.len() as u32).to_le_bytes())
                .raw(s.as_bytes())
        }
        fn int(self, i: i32) -> Self {
            self.op(op::BININT).raw(&i.to_le_bytes())
        }
        fn ints(self, v: &[i32]) -> Self {
            let mut p = self.op(op::MARK);
            for &i in v {
                p = p.int(i);
            }
            p.op(op::TUPLE)
        }
        fn ordered_dict(self) -> Self {
            self.global("collections", "OrderedDict")
                .op(op::EMPTY_TUPLE)
                .op(op::REDUCE)
        }
        /// Pushes `_rebuild_tensor_v2(storage(key), offset, size, stride, False, {})`.
        fn tensor(
            self,
            class: &str,
            key: &str,
            numel: i32,
            offset: i32,
            size: &[i32],
            stride: &[i32],
        ) -> Self {
            self.global("torch._utils", "_rebuild_tensor_v2")
                .op(op::MARK)
                .op(op::MARK)
                .str("storage")
                .global("torch", class)
                .str(key)
                .str("cpu")
                .int(numel)
                .op(op::TUPLE)
                .op(op::BINPERSID)
                .int(offset)
                .ints(size)
                .ints(stride)
                .op(op::NEWFALSE)
                .ordered_dict()
                .op(op::TUPLE)
                .op(op::REDUCE)
        }
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn run(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Result<StateDict> {
        let storages: HashMap<String, Vec<u8>> = storages
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut load = |key: &str, bytes: u64| -> Result<Vec<u8>> {
            let b = storages
                .get(key)
                .ok_or_else(|| anyhow!("no storage {key}"))?;
            if b.len() as u64 != bytes {
                bail!("storage {key} size mismatch");
            }
            Ok(b.clone())
        };
        unpickle_state_dict(pickle, &mut load)
    }

    fn err(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> String {
        format!(
            "{:#}",
            run(pickle, storages).expect_err("expected an error")
        )
    }

    #[test]
    fn reads_contiguous_transposed_and_scalar_tensors() {
        let pickle = P::default()
            .op(op::PROTO)
            .raw(&[2])
            .ordered_dict()
            .op(op::MARK)
            .str("w")
            .tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1])
            .str("wt")
            .tensor("FloatStorage", "0", 6, 0, &[3, 2], &[1, 3])
            .str("tail")
            .tensor("FloatStorage", "0", 6, 4, &[2], &[1])
            .str("n")
            .tensor("LongStorage", "1", 1, 0, &[], &[])
            .op(op::SETITEMS)
            .op(op::STOP)
            .0;
        let sd = run(
            &pickle,
            &[
                ("0", f32_bytes(&[0., 1., 2., 3., 4., 5.])),
                ("1", 10000i64.to_le_bytes().to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(sd.names().collect::<Vec<_>>(), ["w", "wt", "tail", "n"]);
        assert_eq!(
            sd.get("w").unwrap().to_f32().unwrap(),
            [0., 1., 2., 3., 4., 5.]
        );
        assert_eq!(sd.get("w").unwrap().shape, [2, 3]);
        assert_eq!(
            sd.get("wt").unwrap().to_f32().unwrap(),
            [0., 3., 1., 4., 2., 5.]
        );
        assert_eq!(sd.get("tail").unwrap().to_f32().unwrap(), [4., 5.]);
        let n = sd.get("n").unwrap();
        assert_eq!(
            (n.dtype, n.shape.len(), n.to_i64().unwrap()),
            (DType::I64, 0, vec![10000])
        );
    }

    #[test]
    fn protocol_4_stack_global_and_memoize() {
        let sd = P::default()
            .op(op::PROTO)
            .raw(&[4])
            .op(op::FRAME)
            .raw(&[0; 8])
            .op(op::SHORT_BINUNICODE)
            .raw(b"\x0bcollections")
            .op(op::MEMOIZE)
            .op(op::SHORT_BINUNICODE)
            .raw(b"\x0bOrderedDict")
            .op(op::STACK_GLOBAL)
            .op(op::MEMOIZE) // memo 1 = OrderedDict
            .op(op::EMPTY_TUPLE)
            .op(op::REDUCE)
            .op(op::MEMOIZE) // memo 2 = the dict
            .str("b")
            .tensor("HalfStorage", "7", 2, 0, &[2], &[1])
            .op(op::SETITEM)
            .op(op::POP)
            .op(op::BINGET)
            .raw(&[2]) // the same dict, mutated through the memo
            .op(op::EMPTY_DICT)
            .op(op::BUILD)
            .op(op::STOP)
            .0;
        let sd = run(&sd, &[("7", vec![1, 2, 3, 4])]).unwrap();
        let b = sd.get("b").unwrap();
        assert_eq!(
            (b.dtype, b.data.as_slice()),
            (DType::F16, &[1u8, 2, 3, 4][..])
        );
    }

    #[test]
    fn refuses_unexpected_globals_and_opcodes() {
        let p = P::default()
            .op(op::PROTO)
            .raw(&[2])
            .global("os", "system")
            .str("echo hi")
            .op(op::TUPLE1)
            .op(op::REDUCE)
            .op(op::STOP)
            .0;
        let e = err(&p, &[]);
        assert!(e.contains("refusing pickle global os.system"), "{e}");

        let p = P::default()
            .global("torch", "ComplexFloatStorage")
            .op(op::STOP)
            .0;
        assert!(err(&p, &[]).contains("unsupported tensor storage type torch.ComplexFloatStorage"));

        let p = P::default()
            .op(op::PROTO)
            .raw(&[2])
            .op(op::INST)
            .raw(b"os\nsystem\n")
            .op(op::STOP)
            .0;
        let e = err(&p, &[]);
        assert!(e.contains("refusing pickle opcode INST (0x69)"), "{e}");

        let p = P::default().op(op::PROTO).raw(&[9]).0;
        assert!(err(&p, &[]).contains("unsupported pickle protocol 9"));
    }

    #[test]
    fn malformed_pickles_are_errors() {
        // Truncated in the middle of a string, and no STOP at all.
        let full = P::default().ordered_dict().str("abcdef").0;
        for cut in 0..full.len() {
            let e = err(&full[..cut], &[]);
            assert!(e.contains("ends early"), "{e}");
        }
        assert!(err(&[op::BINGET, 3], &[]).contains("memo entry 3"));
        assert!(err(&[op::APPEND], &[]).contains("stack underflow"));
        assert!(err(&[op::TUPLE], &[]).contains("no MARK"));
        assert!(err(&[op::NONE, op::STOP], &[]).contains("holds a None, not a state_dict"));
        let p = P::default()
            .ordered_dict()
            .str("x")
            .int(3)
            .op(op::SETITEM)
            .op(op::STOP)
            .0;
        assert!(err(&p, &[]).contains("\"x\" is a int, not a tensor"));
        // A REDUCE that calls a non-callable.
        let p = P::default().int(1).op(op::EMPTY_TUPLE).op(op::REDUCE).0;
        assert!(err(&p, &[]).contains("cannot call a int"));
    }

    #[test]
    fn bad_views_and_storages_are_errors() {
        let pickle = |offset, size: &[i32], stride: &[i32]| {
            P::default()
                .ordered_dict()
                .str("w")
                .tensor("FloatStorage", "0", 4, offset, size, stride)
                .op(op::SETITEM)
                .op(op::STOP)
                .0
        };
        let st = || vec![("0", f32_bytes(&[1., 2., 3., 4.]))];
        assert!(err(&pickle(1, &[4], &[1]), &st()).contains("reaches element 4"));
        assert!(err(&pickle(0, &[2, 2], &[2, 3]), &st()).contains("reaches element"));
        assert!(err(&pickle(0, &[8], &[0]), &st()).contains("expanded views"));
        assert!(err(&pickle(0, &[-1], &[1]), &st()).contains("negative"));
        assert!(err(&pickle(0, &[2, 2], &[1]), &st()).contains("2 sizes but 1 strides"));
        assert!(
            err(
                &pickle(0, &[65536, 65536, 65536, 65536], &[1, 1, 1, 1]),
                &st()
            )
            .contains("overflow")
        );
        assert!(err(&pickle(0, &[4], &[1]), &[]).contains("no storage 0"));
        assert!(
            run(&pickle(0, &[0, 5], &[5, 1]), &st())
                .unwrap()
                .get("w")
                .unwrap()
                .data
                .is_empty()
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut p = vec![op::EMPTY_TUPLE];
        p.extend(std::iter::repeat_n(op::TUPLE1, 1_000_000));
        p.push(op::STOP);
        assert!(err(&p, &[]).contains("holds a tuple"));
        // A list that contains itself.
        let p = [
            op::EMPTY_LIST,
            op::BINPUT,
            0,
            op::BINGET,
            0,
            op::APPEND,
            op::STOP,
        ];
        assert!(err(&p, &[]).contains("holds a list"));
        // A list grown without bound, two bytes per item.
        let mut p = vec![op::EMPTY_LIST];
        for _ in 0..MAX_OBJECTS {
            p.extend([op::DUP, op::APPEND]);
        }
        p.push(op::STOP);
        assert!(err(&p, &[]).contains("too many objects"));
    }
}
