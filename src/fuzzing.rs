//! Random and mutated inputs for the property tests that feed every decoder hostile bytes
//! (fuzzing on stable Rust). `PROPTEST_CASES=<n>` overrides every property's case count.

use proptest::prelude::*;

/// A property's configuration: `cases` by default, `PROPTEST_CASES` when set (deeper runs).
/// Failures are kept under `proptest-regressions/` and replayed first.
pub fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// One edit of a byte string; positions wrap around its length.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

impl Mutation {
    /// Applies the edit in place.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let at = |i: &usize, len: usize| if len == 0 { 0 } else { i % len };
        match self {
            Mutation::FlipBit(i, bit) if !bytes.is_empty() => {
                let n = at(i, bytes.len());
                bytes[n] ^= 1 << (bit % 8);
            }
            Mutation::SetByte(i, b) if !bytes.is_empty() => {
                let n = at(i, bytes.len());
                bytes[n] = *b;
            }
            Mutation::Insert(i, new) => {
                let n = at(i, bytes.len() + 1);
                bytes.splice(n..n, new.iter().copied());
            }
            Mutation::Delete(i, len) if !bytes.is_empty() => {
                let n = at(i, bytes.len());
                let end = (n + len).min(bytes.len());
                bytes.drain(n..end);
            }
            Mutation::Duplicate(i, len) if !bytes.is_empty() => {
                let n = at(i, bytes.len());
                let end = (n + len).min(bytes.len());
                let copy = bytes[n..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Mutation::Truncate(i) => {
                let n = at(i, bytes.len() + 1);
                bytes.truncate(n);
            }
            _ => {}
        }
    }
}

/// Byte runs that upset protobuf and text decoders: unterminated and overlong varints, huge
/// length prefixes, tags of every wire type (including the reserved ones), invalid UTF-8.
fn nasty_run() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0x80]),
        Just(vec![0xff; 11]),
        Just(vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Just(vec![0x12, 0x7f]),
        (1u32..64, 0u8..8).prop_map(|(field, wire)| vec![((field << 3) as u8) | wire]),
        Just(vec![0xc3, 0x28]),
        Just(vec![0xed, 0xa0, 0x80]),
        Just(vec![0]),
        prop::collection::vec(any::<u8>(), 1..24),
    ]
}

/// One random edit.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        3 => (any::<usize>(), nasty_run()).prop_map(|(i, r)| Mutation::Insert(i, r)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// One of `seeds` with one to eight random edits.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(mutation(), 1..8),
    )
        .prop_map(|(mut bytes, edits)| {
            for e in &edits {
                e.apply(&mut bytes);
            }
            bytes
        })
}

/// One protobuf field as it is on the wire.
#[derive(Debug, Clone, PartialEq)]
enum WireField {
    Varint(u64, u64),
    Fixed64(u64, [u8; 8]),
    Bytes(u64, Vec<u8>),
    Fixed32(u64, [u8; 4]),
}

fn read_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The fields of an encoded message; None when it is not one.
fn parse_fields(b: &[u8]) -> Option<Vec<WireField>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = read_varint(b, &mut pos)?;
        let tag = key >> 3;
        let field = match key & 7 {
            0 => WireField::Varint(tag, read_varint(b, &mut pos)?),
            1 => WireField::Fixed64(tag, b.get(pos..pos + 8)?.try_into().ok()?),
            2 => {
                let len = usize::try_from(read_varint(b, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                WireField::Bytes(tag, b.get(pos..end)?.to_vec())
            }
            5 => WireField::Fixed32(tag, b.get(pos..pos + 4)?.try_into().ok()?),
            _ => return None,
        };
        pos += match &field {
            WireField::Fixed64(..) => 8,
            WireField::Bytes(_, v) => v.len(),
            WireField::Fixed32(..) => 4,
            WireField::Varint(..) => 0,
        };
        out.push(field);
    }
    Some(out)
}

fn encode_fields(fields: &[WireField]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match f {
            WireField::Varint(tag, v) => {
                write_varint(&mut out, tag << 3);
                write_varint(&mut out, *v);
            }
            WireField::Fixed64(tag, v) => {
                write_varint(&mut out, (tag << 3) | 1);
                out.extend_from_slice(v);
            }
            WireField::Bytes(tag, v) => {
                write_varint(&mut out, (tag << 3) | 2);
                write_varint(&mut out, v.len() as u64);
                out.extend_from_slice(v);
            }
            WireField::Fixed32(tag, v) => {
                write_varint(&mut out, (tag << 3) | 5);
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// A change of one field's value that keeps the message well-formed: what a client that
/// encodes properly but sends hostile values does.
#[derive(Debug, Clone)]
pub enum FieldEdit {
    Drop(usize),
    Repeat(usize),
    Varint(usize, u64),
    Bytes(usize, Vec<u8>),
    Add(u64, u64, Vec<u8>),
}

/// A field edit, applied at the top level or inside the n-th embedded message.
#[derive(Debug, Clone)]
pub struct NestedEdit {
    inside: Option<usize>,
    edit: FieldEdit,
}

impl FieldEdit {
    fn apply(&self, fields: &mut Vec<WireField>) {
        let pick = |fields: &[WireField], i: usize, want: fn(&WireField) -> bool| {
            let matching: Vec<usize> = (0..fields.len()).filter(|&n| want(&fields[n])).collect();
            (!matching.is_empty()).then(|| matching[i % matching.len()])
        };
        match self {
            FieldEdit::Drop(i) if !fields.is_empty() => {
                let n = i % fields.len();
                fields.remove(n);
            }
            FieldEdit::Repeat(i) if !fields.is_empty() => {
                let n = i % fields.len();
                fields.insert(n, fields[n].clone());
            }
            FieldEdit::Varint(i, v) => {
                if let Some(n) = pick(fields, *i, |f| matches!(f, WireField::Varint(..))) {
                    if let WireField::Varint(_, old) = &mut fields[n] {
                        *old = *v;
                    }
                }
            }
            FieldEdit::Bytes(i, v) => {
                if let Some(n) = pick(fields, *i, |f| matches!(f, WireField::Bytes(..))) {
                    if let WireField::Bytes(_, old) = &mut fields[n] {
                        old.clone_from(v);
                    }
                }
            }
            FieldEdit::Add(tag, varint, bytes) => {
                let tag = 1 + tag % 16;
                fields.push(if bytes.is_empty() {
                    WireField::Varint(tag, *varint)
                } else {
                    WireField::Bytes(tag, bytes.clone())
                });
            }
            _ => {}
        }
    }
}

impl NestedEdit {
    fn apply(&self, fields: &mut Vec<WireField>) {
        let Some(i) = self.inside else {
            self.edit.apply(fields);
            return;
        };
        let embedded: Vec<usize> = (0..fields.len())
            .filter(|&n| matches!(&fields[n], WireField::Bytes(_, v) if parse_fields(v).is_some_and(|f| !f.is_empty())))
            .collect();
        if embedded.is_empty() {
            return;
        }
        if let WireField::Bytes(_, v) = &mut fields[embedded[i % embedded.len()]] {
            let mut inner = parse_fields(v).unwrap_or_default();
            self.edit.apply(&mut inner);
            *v = encode_fields(&inner);
        }
    }
}

/// Integers at the edges of every range a request field has.
fn edge_varint() -> impl Strategy<Value = u64> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            1,
            2,
            3,
            4,
            6,
            16,
            17,
            31,
            32,
            255,
            256,
            511,
            512,
            4096,
            65535,
            65536,
            131_072,
            131_073,
            1 << 30,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            i64::MAX as u64,
            u64::MAX,
            (-1i64) as u64,
        ]),
        any::<u64>(),
    ]
}

/// Strings and bytes a hostile client sends: names the fixture uses, ids, addresses,
/// uuids in every form, huge, empty, control characters, invalid UTF-8.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "rbd",
            "vm",
            "new",
            "host",
            "osd",
            "rack",
            "root",
            "default",
            "host0",
            "1.0",
            "1.0x1f",
            "1.31",
            "1.",
            ".1",
            "4294967295.0",
            "10.0.0.1",
            "::1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "fe80::1%eth0",
            "00000000-0000-0000-0000-000000000000",
            "{0000f00d-0000-0000-0000-000000000001}",
            "urn:uuid:0000f00d-0000-0000-0000-000000000002",
            "0000f00d000000000000000000000003",
            "a\nb",
            "\u{0}",
            "\u{7f}",
            "é",
            "/",
            "..",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        (1usize..8192, any::<u8>()).prop_map(|(n, b)| vec![b' ' + b % 95; n]),
        "\\PC{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn field_edit() -> impl Strategy<Value = FieldEdit> {
    prop_oneof![
        1 => any::<usize>().prop_map(FieldEdit::Drop),
        1 => any::<usize>().prop_map(FieldEdit::Repeat),
        4 => (any::<usize>(), edge_varint()).prop_map(|(i, v)| FieldEdit::Varint(i, v)),
        4 => (any::<usize>(), hostile_bytes()).prop_map(|(i, v)| FieldEdit::Bytes(i, v)),
        1 => (any::<u64>(), edge_varint(), hostile_bytes())
            .prop_map(|(t, v, b)| FieldEdit::Add(t, v, b)),
    ]
}

fn nested_edit() -> impl Strategy<Value = NestedEdit> {
    (prop::option::weighted(0.3, any::<usize>()), field_edit())
        .prop_map(|(inside, edit)| NestedEdit { inside, edit })
}

/// One of `seeds` with one to four of its field values replaced: well-formed messages with
/// hostile contents, which reach the handlers' validation.
pub fn field_edited(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(nested_edit(), 1..5),
    )
        .prop_map(|(seed, edits)| {
            let Some(mut fields) = parse_fields(&seed) else {
                return seed;
            };
            for e in &edits {
                e.apply(&mut fields);
            }
            encode_fields(&fields)
        })
}

/// A value put into a JSON document: the edges of every range a stored field has, and types
/// its reader does not expect.
#[derive(Debug, Clone)]
pub enum JsonLeaf {
    Null,
    Bool(bool),
    Int(i64),
    /// Beyond `i64`.
    Huge,
    Float(f64),
    Text(String),
    Ints(Vec<i64>),
    EmptyObject,
}

impl JsonLeaf {
    fn value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            JsonLeaf::Null => Value::Null,
            JsonLeaf::Bool(b) => Value::Bool(*b),
            JsonLeaf::Int(i) => Value::from(*i),
            JsonLeaf::Huge => Value::from(u64::MAX),
            JsonLeaf::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            JsonLeaf::Text(t) => Value::String(t.clone()),
            JsonLeaf::Ints(v) => Value::from(v.clone()),
            JsonLeaf::EmptyObject => Value::Object(Default::default()),
        }
    }
}

/// One edit of a JSON document, at its n-th node in document order (wrapping).
#[derive(Debug, Clone)]
pub enum JsonEdit {
    /// The node replaced by a value.
    Replace(usize, JsonLeaf),
    /// The node removed from its object or array.
    Remove(usize),
    /// The node copied into its object under another key.
    CopyAs(usize, String),
    /// The node replaced by a value of its own type: a number by the number, a string by the
    /// text, a list by the list, a bool by its negation (what a reader that checks types
    /// accepts, and must then judge).
    Alike(usize, i64, String, Vec<i64>),
}

/// A step from a JSON node to one of its children.
#[derive(Debug, Clone)]
enum JsonStep {
    Key(String),
    Index(usize),
}

/// The paths of every node below the root, in document order.
fn json_paths(v: &serde_json::Value, at: &mut Vec<JsonStep>, out: &mut Vec<Vec<JsonStep>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                at.push(JsonStep::Key(k.clone()));
                out.push(at.clone());
                json_paths(child, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(JsonStep::Index(i));
                out.push(at.clone());
                json_paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

impl JsonEdit {
    fn apply(&self, root: &mut serde_json::Value) {
        let mut paths = Vec::new();
        json_paths(root, &mut Vec::new(), &mut paths);
        let n = match self {
            JsonEdit::Replace(n, _)
            | JsonEdit::Remove(n)
            | JsonEdit::CopyAs(n, _)
            | JsonEdit::Alike(n, ..) => *n,
        };
        if paths.is_empty() {
            return;
        }
        let path = &paths[n % paths.len()];
        let (last, parents) = path.split_last().expect("a path below the root");
        let mut parent = &mut *root;
        for step in parents {
            parent = match (step, parent) {
                (JsonStep::Key(k), serde_json::Value::Object(m)) => m.get_mut(k).expect("a path"),
                (JsonStep::Index(i), serde_json::Value::Array(a)) => &mut a[*i],
                _ => return,
            };
        }
        let alike = |node: &serde_json::Value, int: i64, text: &str, ints: &[i64]| match node {
            serde_json::Value::Number(_) => serde_json::Value::from(int),
            serde_json::Value::String(_) => serde_json::Value::from(text),
            serde_json::Value::Array(_) => serde_json::Value::from(ints.to_vec()),
            serde_json::Value::Bool(b) => serde_json::Value::Bool(!b),
            other => other.clone(),
        };
        match (self, last, parent) {
            (
                JsonEdit::Alike(_, int, text, ints),
                JsonStep::Key(k),
                serde_json::Value::Object(m),
            ) => {
                if let Some(node) = m.get_mut(k) {
                    *node = alike(node, *int, text, ints);
                }
            }
            (
                JsonEdit::Alike(_, int, text, ints),
                JsonStep::Index(i),
                serde_json::Value::Array(a),
            ) => {
                a[*i] = alike(&a[*i], *int, text, ints);
            }
            (JsonEdit::Replace(_, leaf), JsonStep::Key(k), serde_json::Value::Object(m)) => {
                m.insert(k.clone(), leaf.value());
            }
            (JsonEdit::Replace(_, leaf), JsonStep::Index(i), serde_json::Value::Array(a)) => {
                a[*i] = leaf.value();
            }
            (JsonEdit::Remove(_), JsonStep::Key(k), serde_json::Value::Object(m)) => {
                m.remove(k);
            }
            (JsonEdit::Remove(_), JsonStep::Index(i), serde_json::Value::Array(a)) => {
                a.remove(*i);
            }
            (JsonEdit::CopyAs(_, name), JsonStep::Key(k), serde_json::Value::Object(m)) => {
                if let Some(v) = m.get(k).cloned() {
                    m.insert(name.clone(), v);
                }
            }
            _ => {}
        }
    }
}

fn json_leaf() -> impl Strategy<Value = JsonLeaf> {
    prop_oneof![
        1 => Just(JsonLeaf::Null),
        1 => any::<bool>().prop_map(JsonLeaf::Bool),
        6 => prop_oneof![
            prop::sample::select(vec![
                0i64,
                1,
                2,
                3,
                -1,
                -3,
                16,
                17,
                31,
                65535,
                65536,
                131_072,
                131_073,
                i64::from(i32::MAX),
                i64::from(i32::MAX) + 1,
                i64::from(u32::MAX),
                i64::from(u32::MAX) + 1,
                i64::MAX,
                i64::MIN,
            ]),
            any::<i64>(),
        ]
        .prop_map(JsonLeaf::Int),
        1 => Just(JsonLeaf::Huge),
        1 => any::<f64>().prop_map(JsonLeaf::Float),
        4 => hostile_bytes().prop_map(|b| JsonLeaf::Text(String::from_utf8_lossy(&b).into_owned())),
        3 => prop::collection::vec(
            prop_oneof![0i64..12, Just(-1i64), Just(i64::from(u32::MAX)), any::<i64>()],
            0..24
        )
        .prop_map(JsonLeaf::Ints),
        1 => Just(JsonLeaf::EmptyObject),
    ]
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let int = || {
        json_leaf().prop_map(|l| match l {
            JsonLeaf::Int(i) => i,
            _ => -1,
        })
    };
    let ints = || {
        json_leaf().prop_map(|l| match l {
            JsonLeaf::Ints(v) => v,
            JsonLeaf::Int(i) => vec![i, i],
            _ => Vec::new(),
        })
    };
    prop_oneof![
        6 => (any::<usize>(), int(), hostile_bytes(), ints()).prop_map(|(n, i, t, v)| {
            JsonEdit::Alike(n, i, String::from_utf8_lossy(&t).into_owned(), v)
        }),
        3 => (any::<usize>(), json_leaf()).prop_map(|(n, l)| JsonEdit::Replace(n, l)),
        2 => any::<usize>().prop_map(JsonEdit::Remove),
        1 => (any::<usize>(), prop::sample::select(vec!["07", "x", "RwMutex", "-1", "99999999999", "version"]))
            .prop_map(|(n, k)| JsonEdit::CopyAs(n, k.to_string())),
    ]
}

/// One of `seeds` (JSON documents) with one to four of its nodes replaced, removed or copied:
/// well-formed JSON with hostile contents, which reaches a reader's checks rather than its
/// parser. A seed that is not JSON is returned as it is.
pub fn json_edited(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(json_edit(), 1..5),
    )
        .prop_map(|(seed, edits)| {
            let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&seed) else {
                return seed;
            };
            for e in &edits {
                e.apply(&mut doc);
            }
            serde_json::to_vec(&doc).unwrap_or(seed)
        })
}

/// Bytes for a decoder: well-formed messages with hostile values (the handlers' work),
/// byte-mutated valid inputs (the decoder's work), and some entirely random.
pub fn bytes(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        2 => mutated(seeds.clone()),
        3 => field_edited(seeds),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds_and_change_the_input() {
        let mut b = vec![1, 2, 3, 4];
        Mutation::FlipBit(0, 9).apply(&mut b);
        assert_eq!(b, vec![3, 2, 3, 4]);
        Mutation::Delete(3, 100).apply(&mut b);
        assert_eq!(b.len(), 3);
        Mutation::Duplicate(1, 100).apply(&mut b);
        assert_eq!(b, vec![3, 2, 3, 2, 3]);
        Mutation::Insert(5, vec![9]).apply(&mut b);
        assert_eq!(b.len(), 6);
        Mutation::Truncate(0).apply(&mut b);
        assert!(b.is_empty());
        // Nothing to edit: no panic, still empty.
        Mutation::SetByte(0, 1).apply(&mut b);
        Mutation::FlipBit(0, 1).apply(&mut b);
        assert!(b.is_empty());
    }

    #[test]
    fn json_edits_reach_every_node_and_keep_the_document_json() {
        let mut doc: serde_json::Value =
            serde_json::from_str(r#"{"a":{"b":[1,2]},"c":"x"}"#).unwrap();
        // Nodes in order: a, a.b, a.b[0], a.b[1], c.
        JsonEdit::Replace(2, JsonLeaf::Int(-1)).apply(&mut doc);
        assert_eq!(doc["a"]["b"][0], -1);
        JsonEdit::Remove(4).apply(&mut doc);
        assert!(doc.get("c").is_none());
        JsonEdit::CopyAs(1, "d".to_string()).apply(&mut doc);
        assert_eq!(doc["a"]["d"], doc["a"]["b"]);
        // Nodes now: a, a.b, a.b[0], a.b[1], a.d, a.d[0], a.d[1]; 13 wraps to a.d[1].
        JsonEdit::Replace(13, JsonLeaf::Null).apply(&mut doc);
        JsonEdit::Alike(1, 5, "t".to_string(), vec![9]).apply(&mut doc);
        JsonEdit::Alike(0, 5, "t".to_string(), vec![9]).apply(&mut doc);
        assert_eq!(
            doc,
            serde_json::json!({"a": {"b": [9], "d": [-1, null]}}),
            "an object stays"
        );
        let mut empty = serde_json::json!(3);
        JsonEdit::Remove(0).apply(&mut empty);
        assert_eq!(empty, 3, "nothing below the root: unchanged");
    }

    #[test]
    fn field_edits_keep_messages_well_formed() {
        use prost::Message;

        use crate::proto::monitor as api;
        let seed = api::CreateImageRequest {
            pool_name: "rbd".to_string(),
            image_name: "vm".to_string(),
            size: 512,
            object_size: 0,
        }
        .encode_to_vec();
        let mut fields = parse_fields(&seed).expect("a message");
        assert_eq!(encode_fields(&fields), seed);
        FieldEdit::Varint(0, u64::MAX).apply(&mut fields);
        FieldEdit::Bytes(1, b"x".to_vec()).apply(&mut fields);
        FieldEdit::Add(0, 0, b"other".to_vec()).apply(&mut fields);
        let edited = api::CreateImageRequest::decode(encode_fields(&fields).as_slice()).unwrap();
        // The later of two occurrences wins, as in protobuf.
        assert_eq!(edited.pool_name, "other");
        assert_eq!(edited.image_name, "x");
        assert_eq!(edited.size, u64::MAX);
        // Inside an embedded message (a map entry).
        let seed = api::GetPgMapRequest {
            pool_epochs: [(1, 5)].into_iter().collect(),
        }
        .encode_to_vec();
        let mut fields = parse_fields(&seed).unwrap();
        NestedEdit {
            inside: Some(0),
            edit: FieldEdit::Varint(1, 9),
        }
        .apply(&mut fields);
        let edited = api::GetPgMapRequest::decode(encode_fields(&fields).as_slice()).unwrap();
        assert_eq!(edited.pool_epochs.get(&1), Some(&9));
        assert_eq!(
            parse_fields(&[0x0a, 0x05, 1]),
            None,
            "a length past the end"
        );
    }
}
