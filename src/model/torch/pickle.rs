//! A restricted unpickler for the `data.pkl` that `torch.save` writes: it
//! rebuilds a state dict's tensors as *descriptions* (storage key, dtype,
//! offset, shape, stride) and nothing else.
//!
//! Why written here rather than taken from a crate: `serde-pickle` has no
//! persistent ids (`BINPERSID`, how torch points at its storages) and
//! turns every global it does not know into an opaque value, so torch's
//! `_rebuild_tensor_v2(...)` calls cannot be read through it; candle's
//! pickle reader does this job but comes inside `candle-core`, a whole
//! tensor library. The format needed is small: the binary opcodes of
//! protocols 2 to 5 that build plain values and containers, plus four
//! callables.
//!
//! Nothing in a file ever runs: a global is only a name checked against an
//! allowlist ([`Global`]), `REDUCE` on an allowed global is interpreted
//! here (never called), and `BUILD` may only set attributes of a dict.
//! Every other global, and every opcode that could create objects of other
//! kinds (`INST`, `OBJ`, `NEWOBJ`, the extension registry, ...), is
//! refused with a message saying what was found and where.
//!
//! Resources: each opcode reads at least one byte and adds at most one
//! value or container, values are cheap to copy (shared strings and tuples;
//! lists and dicts live in an arena and are referred to by index, so a
//! pickle that puts a list inside itself makes no reference cycle), and
//! lengths are checked against the bytes left, so memory and time grow
//! linearly with the size of `data.pkl`.

use super::super::Dtype;
use std::collections::HashMap;
use std::rc::Rc;

/// A storage, as a persistent id names it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Storage {
    /// Element type, from the storage class (`torch.FloatStorage`, ...).
    pub dtype: Dtype,
    /// Its record in the archive: `<prefix>/data/<key>`.
    pub key: String,
    /// Elements the pickle says it holds.
    pub numel: u64,
}

/// A tensor over a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Debug)]
pub(super) struct Tensor {
    pub storage: Rc<Storage>,
    /// In elements.
    pub offset: i64,
    pub shape: Vec<i64>,
    pub stride: Vec<i64>,
}

/// The globals a torch state dict uses, and nothing else.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(Dtype),
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch", storage) => Global::Storage(storage_dtype(storage)?),
            _ => return None,
        })
    }
    fn name(self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => {
                "torch._utils._rebuild_parameter_with_state".into()
            }
            Global::Storage(d) => format!("torch storage class for {}", d.name()),
        }
    }
}

/// The storage classes torch pickles, and the element type of each.
fn storage_dtype(name: &str) -> Option<Dtype> {
    Some(match name {
        "DoubleStorage" => Dtype::F64,
        "FloatStorage" => Dtype::F32,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        _ => return None,
    })
}

/// A pickled value.
#[derive(Clone, Debug)]
enum Value {
    None,
    /// Its value changes no tensor, so it is not kept.
    Bool,
    Int(i64),
    /// Its value changes no tensor, so it is not kept.
    Float,
    Str(Rc<str>),
    /// Its value changes no tensor, so it is not kept.
    Bytes,
    Tuple(Rc<[Value]>),
    /// Index into the arena.
    List(usize),
    /// Index into the arena.
    Dict(usize),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<Tensor>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "a bool",
            Value::Int(_) => "an int",
            Value::Float => "a float",
            Value::Str(_) => "a string",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class or function",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

enum Container {
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

/// One entry of the unpickled state dict.
pub(super) type Entry = (String, Rc<Tensor>);

/// Unpickle `data`: a state dict (a dict or `OrderedDict` from names to
/// tensors; a dict holding one under `"state_dict"`, as some training
/// scripts save, is unwrapped as mergekit does). Errors say what was found
/// and at which byte.
pub(super) fn load(data: &[u8]) -> Result<Vec<Entry>, String> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
    };
    let top = m.run()?;
    m.state_dict(top)
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Container>,
}

/// Opcodes refused by name: they exist in the pickle format but torch's
/// state dicts never use them, and most of them create arbitrary objects.
fn refused(op: u8) -> Option<&'static str> {
    Some(match op {
        b'i' => "INST (create an instance of any class)",
        b'o' => "OBJ (create an instance of any class)",
        0x81 => "NEWOBJ (create an instance of any class)",
        0x92 => "NEWOBJ_EX (create an instance of any class)",
        0x82..=0x84 => "EXT1/EXT2/EXT4 (the extension registry)",
        b'P' => "PERSID (text persistent id)",
        b'g' | b'p' => "GET/PUT (text memo)",
        b'I' | b'L' | b'S' | b'V' | b'F' => "a protocol-0 text opcode",
        0x8b => "LONG4",
        0x8f..=0x91 => "a set opcode",
        0x96..=0x98 => "an out-of-band buffer opcode",
        _ => return None,
    })
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("byte {}: ends inside an opcode", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }
    fn len_u64(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.data.len() - self.pos)
            .ok_or_else(|| format!("byte {}: length {n} runs past the end", self.pos))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("byte {}: unterminated GLOBAL name", self.pos))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn pop(&mut self) -> Result<Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("a value was expected on the stack, a MARK found".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }
    fn top(&self) -> Result<&Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("a value was expected on the stack, a MARK found".into());
        }
        self.stack.last().ok_or_else(|| "stack underflow".into())
    }
    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(m))
    }
    fn push_container(&mut self, c: Container) -> Value {
        let i = self.arena.len();
        let v = match c {
            Container::List(_) => Value::List(i),
            Container::Dict(_) => Value::Dict(i),
        };
        self.arena.push(c);
        v
    }
    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> Result<(), String> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("memo entry {key} was never stored"))?;
        self.stack.push(v);
        Ok(())
    }
    fn str(&mut self, n: usize) -> Result<Value, String> {
        let at = self.pos;
        let bytes = self.take(n)?;
        let s =
            std::str::from_utf8(bytes).map_err(|_| format!("byte {at}: string is not UTF-8"))?;
        Ok(Value::Str(s.into()))
    }
    fn bytes(&mut self, n: usize) -> Result<Value, String> {
        self.take(n)?;
        Ok(Value::Bytes)
    }
    fn global(&self, module: &str, name: &str) -> Result<Value, String> {
        Global::lookup(module, name)
            .map(Value::Global)
            .ok_or_else(|| {
                format!(
                    "refused global `{module}.{name}`: only the globals torch uses to rebuild \
                 tensors (torch._utils._rebuild_tensor_v2, torch.*Storage, \
                 collections.OrderedDict) are allowed, and nothing in the file is run"
                )
            })
    }

    /// Run to `STOP`; the value on top then.
    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self
                .take(1)
                .map_err(|_| "ends without a STOP opcode".to_string())?[0];
            match self.step(op) {
                Ok(true) => {
                    let v = self.pop().map_err(|e| format!("byte {at}: STOP: {e}"))?;
                    return Ok(v);
                }
                Ok(false) => {}
                Err(e) if e.starts_with("byte ") => return Err(e),
                Err(e) => return Err(format!("byte {at}: {e}")),
            }
        }
    }

    /// One opcode (already read); `true` at `STOP`.
    fn step(&mut self, op: u8) -> Result<bool, String> {
        match op {
            0x80 => {
                let p = self.u8()?;
                if p > 5 {
                    return Err(format!("pickle protocol {p} is unknown (0 to 5 are)"));
                }
            }
            0x95 => {
                // FRAME: a length hint for buffered readers; all is in memory.
                self.le::<8>()?;
            }
            b'.' => return Ok(true),
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool),
            0x89 => self.stack.push(Value::Bool),
            b'J' => {
                let v = i32::from_le_bytes(self.le()?);
                self.stack.push(Value::Int(v.into()));
            }
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(v.into()));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.le()?);
                self.stack.push(Value::Int(v.into()));
            }
            0x8a => {
                let n = self.u8()? as usize;
                let bytes = self.take(n)?;
                if n > 8 {
                    return Err(format!("LONG1 of {n} bytes: larger than 64 bits"));
                }
                let mut b = if bytes.last().is_some_and(|&x| x & 0x80 != 0) {
                    [0xff; 8]
                } else {
                    [0; 8]
                };
                b[..n].copy_from_slice(bytes);
                self.stack.push(Value::Int(i64::from_le_bytes(b)));
            }
            b'G' => {
                self.le::<8>()?;
                self.stack.push(Value::Float);
            }
            b'X' => {
                let n = u32::from_le_bytes(self.le()?);
                let n = self.len_u64(n.into())?;
                let v = self.str(n)?;
                self.stack.push(v);
            }
            0x8c => {
                let n = self.u8()? as usize;
                let v = self.str(n)?;
                self.stack.push(v);
            }
            0x8d => {
                let n = u64::from_le_bytes(self.le()?);
                let n = self.len_u64(n)?;
                let v = self.str(n)?;
                self.stack.push(v);
            }
            b'C' | b'U' => {
                let n = self.u8()? as usize;
                let v = self.bytes(n)?;
                self.stack.push(v);
            }
            b'B' | b'T' => {
                let n = u32::from_le_bytes(self.le()?);
                let n = self.len_u64(n.into())?;
                let v = self.bytes(n)?;
                self.stack.push(v);
            }
            0x8e => {
                let n = u64::from_le_bytes(self.le()?);
                let n = self.len_u64(n)?;
                let v = self.bytes(n)?;
                self.stack.push(v);
            }
            b')' => self.stack.push(Value::Tuple(Rc::from(Vec::new()))),
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items.into()));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.stack.push(Value::Tuple(items.into()));
            }
            b']' => {
                let v = self.push_container(Container::List(Vec::new()));
                self.stack.push(v);
            }
            b'l' => {
                let items = self.pop_mark()?;
                let v = self.push_container(Container::List(items));
                self.stack.push(v);
            }
            b'a' => {
                let v = self.pop()?;
                self.list_mut()?.push(v);
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.list_mut()?.extend(items);
            }
            b'}' => {
                let v = self.push_container(Container::Dict(Vec::new()));
                self.stack.push(v);
            }
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = pairs(items)?;
                let v = self.push_container(Container::Dict(pairs));
                self.stack.push(v);
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.dict_mut()?.push((k, v));
            }
            b'u' => {
                let items = self.pop_mark()?;
                let new = pairs(items)?;
                self.dict_mut()?.extend(new);
            }
            b'q' => {
                let k = self.u8()?;
                self.memo_put(k.into())?;
            }
            b'r' => {
                let k = u32::from_le_bytes(self.le()?);
                self.memo_put(k)?;
            }
            0x94 => {
                let k = u32::try_from(self.memo.len()).map_err(|_| "memo is full")?;
                self.memo_put(k)?;
            }
            b'h' => {
                let k = self.u8()?;
                self.memo_get(k.into())?;
            }
            b'j' => {
                let k = u32::from_le_bytes(self.le()?);
                self.memo_get(k)?;
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                let g = self.global(&module, &name)?;
                self.stack.push(g);
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    return Err(format!(
                        "STACK_GLOBAL of {} and {}, not two strings",
                        module.kind(),
                        name.kind()
                    ));
                };
                let g = self.global(module, name)?;
                self.stack.push(g);
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = self.reduce(callable, args)?;
                self.stack.push(v);
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.top()?;
                // `torch.save(state_dict)` sets the dict's `_metadata`
                // attribute this way; that attribute does not change a
                // tensor, and nothing else may be set on anything.
                let ok = matches!(target, Value::Dict(_))
                    && matches!(state, Value::Dict(_) | Value::None);
                if !ok {
                    return Err(format!(
                        "refused BUILD (set the state of an object) on {} with {}: only a \
                         state dict's own attributes may be set",
                        target.kind(),
                        state.kind()
                    ));
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let s = persistent(&pid)?;
                self.stack.push(Value::Storage(Rc::new(s)));
            }
            _ => {
                return Err(match refused(op) {
                    Some(what) => format!("refused opcode {what}: torch state dicts do not use it"),
                    None => format!("unknown pickle opcode 0x{op:02x}"),
                })
            }
        }
        Ok(false)
    }

    fn list_mut(&mut self) -> Result<&mut Vec<Value>, String> {
        let top = self.top()?.clone();
        match top {
            Value::List(i) => match &mut self.arena[i] {
                Container::List(l) => Ok(l),
                Container::Dict(_) => Err("internal: list index names a dict".into()),
            },
            other => Err(format!("APPEND to {}, not a list", other.kind())),
        }
    }
    fn dict_mut(&mut self) -> Result<&mut Vec<(Value, Value)>, String> {
        let top = self.top()?.clone();
        match top {
            Value::Dict(i) => match &mut self.arena[i] {
                Container::Dict(d) => Ok(d),
                Container::List(_) => Err("internal: dict index names a list".into()),
            },
            other => Err(format!("SETITEM on {}, not a dict", other.kind())),
        }
    }

    /// `callable(*args)`, for the allowed callables only.
    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, String> {
        let Value::Global(g) = callable else {
            return Err(format!("refused REDUCE: calling {}", callable.kind()));
        };
        let Value::Tuple(args) = args else {
            return Err(format!(
                "REDUCE of {} with {}, not an argument tuple",
                g.name(),
                args.kind()
            ));
        };
        match g {
            Global::OrderedDict if args.is_empty() => {
                Ok(self.push_container(Container::Dict(Vec::new())))
            }
            Global::RebuildTensorV2 => rebuild_tensor(&args).map(|t| Value::Tensor(Rc::new(t))),
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let want = if g == Global::RebuildParameter { 3 } else { 4 };
                match args.first() {
                    Some(Value::Tensor(t)) if args.len() == want => Ok(Value::Tensor(t.clone())),
                    _ => Err(format!(
                        "{} takes a tensor and {} more arguments",
                        g.name(),
                        want - 1
                    )),
                }
            }
            _ => Err(format!(
                "refused REDUCE: {} with {} arguments is not a call torch makes to rebuild a tensor",
                g.name(),
                args.len()
            )),
        }
    }

    /// The state dict from the unpickled top value.
    fn state_dict(&self, top: Value) -> Result<Vec<Entry>, String> {
        let mut dict = self.dict(&top).ok_or_else(|| {
            format!(
                "the checkpoint holds {}, not a state dict (a dict of tensors)",
                top.kind()
            )
        })?;
        // A training checkpoint `{"state_dict": {...}, ...}`: mergekit reads
        // the inner dict, and so does smelt.
        if let Some(inner) = dict
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == "state_dict"))
            .and_then(|(_, v)| self.dict(v))
        {
            dict = inner;
        }
        let mut out: Vec<Entry> = Vec::with_capacity(dict.len());
        let mut seen = std::collections::HashSet::new();
        for (k, v) in dict {
            let Value::Str(name) = k else {
                return Err(format!(
                    "the state dict has a key that is {}, not a name",
                    k.kind()
                ));
            };
            let Value::Tensor(t) = v else {
                return Err(format!(
                    "`{name}` holds {}, not a tensor",
                    if let Value::Dict(_) = v {
                        "a dict"
                    } else {
                        v.kind()
                    }
                ));
            };
            if !seen.insert(name.clone()) {
                return Err(format!("`{name}` appears twice in the state dict"));
            }
            out.push((name.to_string(), t.clone()));
        }
        Ok(out)
    }

    fn dict(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match v {
            Value::Dict(i) => match &self.arena[*i] {
                Container::Dict(d) => Some(d),
                Container::List(_) => None,
            },
            _ => None,
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("SETITEMS/DICT with an odd number of values".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// `('storage', StorageClass, key, location, numel)`.
fn persistent(pid: &Value) -> Result<Storage, String> {
    let bad = || {
        format!(
            "persistent id is {}, not torch's ('storage', class, key, location, numel)",
            pid.kind()
        )
    };
    let Value::Tuple(items) = pid else {
        return Err(bad());
    };
    match &items[..] {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_), Value::Int(numel)]
            if &**tag == "storage" =>
        {
            let numel = u64::try_from(*numel)
                .map_err(|_| format!("storage `{key}` has {numel} elements"))?;
            Ok(Storage {
                dtype: *dtype,
                key: key.to_string(),
                numel,
            })
        }
        [_, Value::Global(g), ..] if !matches!(g, Global::Storage(_)) => Err(format!(
            "persistent id names {}, not a storage class",
            g.name()
        )),
        _ => Err(bad()),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
/// backward_hooks[, metadata])`: only the first four change the data.
fn rebuild_tensor(args: &[Value]) -> Result<Tensor, String> {
    let ints = |v: &Value, what: &str| -> Result<Vec<i64>, String> {
        let Value::Tuple(items) = v else {
            return Err(format!(
                "_rebuild_tensor_v2: {what} is {}, not a tuple",
                v.kind()
            ));
        };
        items
            .iter()
            .map(|x| match x {
                Value::Int(i) => Ok(*i),
                other => Err(format!(
                    "_rebuild_tensor_v2: {what} holds {}, not an int",
                    other.kind()
                )),
            })
            .collect()
    };
    if !(6..=7).contains(&args.len()) {
        return Err(format!(
            "_rebuild_tensor_v2 with {} arguments (torch passes 6 or 7)",
            args.len()
        ));
    }
    let Value::Storage(storage) = &args[0] else {
        return Err(format!(
            "_rebuild_tensor_v2 of {}, not a storage",
            args[0].kind()
        ));
    };
    let Value::Int(offset) = args[1] else {
        return Err(format!(
            "_rebuild_tensor_v2: storage offset is {}",
            args[1].kind()
        ));
    };
    let shape = ints(&args[2], "size")?;
    let stride = ints(&args[3], "stride")?;
    if shape.len() != stride.len() {
        return Err(format!(
            "_rebuild_tensor_v2: size has {} dimensions, stride {}",
            shape.len(),
            stride.len()
        ));
    }
    Ok(Tensor {
        storage: storage.clone(),
        offset,
        shape,
        stride,
    })
}
