//! A minimal protobuf wire-format encoder and decoder, written by hand from the encoding rules
//! (varints, length-delimited fields, packed repeated, maps as repeated key/value entries), so
//! the tests' legacy client cannot share a mistake with the server's generated code.
//!
//! Every field type of the legacy schema is `int32`, `int64`, `uint32`, `uint64`, `bool`,
//! `string`, an enum, a message, a map or a repeated `int32`: none is `sint32`/`sint64`, so no
//! zig-zag encoding is involved. A negative `int32`/`int64` is its two's complement sign-extended
//! to 64 bits, i.e. a 10-byte varint.

use std::fmt;

/// Wire type 0: a base-128 varint.
pub const WIRE_VARINT: u8 = 0;
/// Wire type 1: eight little-endian bytes.
pub const WIRE_FIXED64: u8 = 1;
/// Wire type 2: a varint length, then that many bytes.
pub const WIRE_LEN: u8 = 2;
/// Wire type 5: four little-endian bytes.
pub const WIRE_FIXED32: u8 = 5;

/// The most bytes a varint of 64 bits takes (7 bits per byte).
const VARINT_MAX_BYTES: usize = 10;

/// Bytes of a decoding error's value shown in its message.
const SHOWN_BYTES: usize = 16;

/// Why bytes are not a valid protobuf message (of the shape the caller expected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ends inside a key, a varint or a fixed-size value.
    #[error("message truncated at byte {offset}")]
    Truncated { offset: usize },
    /// A varint of more than 10 bytes, or a 10th byte carrying more than the 64th bit.
    #[error("varint at byte {offset} is longer than 64 bits")]
    VarintTooLong { offset: usize },
    /// A length-delimited field claims more bytes than the message has left.
    #[error("field {field} at byte {offset} claims {len} bytes, {left} left")]
    LengthOverrun {
        field: u32,
        offset: usize,
        len: u64,
        left: usize,
    },
    /// Field number 0 (or above 2^29 - 1) is not a valid field number.
    #[error("invalid field number {field} at byte {offset}")]
    BadFieldNumber { field: u64, offset: usize },
    /// Wire types 3 and 4 (groups), 6 and 7 are not used by proto3 messages.
    #[error("unsupported wire type {wire_type} at byte {offset}")]
    BadWireType { wire_type: u8, offset: usize },
    /// A known field arrived with a wire type its schema type cannot have.
    #[error("field {field} has wire type {got}, expected {expected}")]
    WrongWireType { field: u32, expected: u8, got: u8 },
    /// A `string` field whose bytes are not UTF-8.
    #[error("field {field} is not UTF-8 (starts {prefix})")]
    BadUtf8 { field: u32, prefix: String },
}

/// Builds one protobuf message. Scalars at their default (0, false, "") are left out, as a
/// proto3 encoder does, so encoded bytes match what the C++ and Go clients send.
#[derive(Default, Clone)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded message.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }

    /// Appends a base-128 varint: seven bits per byte, least significant group first, the high
    /// bit set on every byte but the last.
    pub fn put_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// Appends a field key: `(field << 3) | wire_type`, as a varint.
    pub fn put_key(&mut self, field: u32, wire_type: u8) {
        self.put_varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    /// An `int32` (or enum) field; negative values are sign-extended to 64 bits.
    pub fn int32(&mut self, field: u32, value: i32) -> &mut Self {
        self.int64(field, i64::from(value))
    }

    /// An `int64` field; negative values are their 64-bit two's complement.
    pub fn int64(&mut self, field: u32, value: i64) -> &mut Self {
        self.uint64(field, value as u64)
    }

    /// A `uint32` field.
    pub fn uint32(&mut self, field: u32, value: u32) -> &mut Self {
        self.uint64(field, u64::from(value))
    }

    /// A `uint64` field.
    pub fn uint64(&mut self, field: u32, value: u64) -> &mut Self {
        if value != 0 {
            self.put_key(field, WIRE_VARINT);
            self.put_varint(value);
        }
        self
    }

    /// A `bool` field: varint 1 when true, nothing when false.
    pub fn boolean(&mut self, field: u32, value: bool) -> &mut Self {
        self.uint64(field, u64::from(value))
    }

    /// A `string` field (length-delimited UTF-8), left out when empty.
    pub fn string(&mut self, field: u32, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.bytes_field(field, value.as_bytes());
        }
        self
    }

    /// A length-delimited field written even when empty: embedded messages are present on the
    /// wire even with no fields of their own (that is how a oneof member is chosen).
    pub fn bytes_field(&mut self, field: u32, value: &[u8]) -> &mut Self {
        self.put_key(field, WIRE_LEN);
        self.put_varint(value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    /// An embedded message field, always written (present even when empty).
    pub fn message(&mut self, field: u32, message: Encoder) -> &mut Self {
        self.bytes_field(field, &message.bytes)
    }

    /// A `repeated int32` field, packed (proto3's default): one length-delimited field holding
    /// the varints back to back; left out when empty.
    pub fn packed_int32(&mut self, field: u32, values: &[i32]) -> &mut Self {
        if !values.is_empty() {
            let mut packed = Encoder::new();
            for &value in values {
                packed.put_varint(i64::from(value) as u64);
            }
            self.bytes_field(field, &packed.bytes);
        }
        self
    }

    /// One entry of a map field: an embedded message with the key as field 1 and the value as
    /// field 2, each built by its closure (which leaves defaults out, as proto3 does).
    pub fn map_entry(
        &mut self,
        field: u32,
        key: impl FnOnce(&mut Encoder),
        value: impl FnOnce(&mut Encoder),
    ) -> &mut Self {
        let mut entry = Encoder::new();
        key(&mut entry);
        value(&mut entry);
        self.message(field, entry)
    }
}

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: the bytes after the length.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl WireValue<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => WIRE_VARINT,
            WireValue::Fixed64(_) => WIRE_FIXED64,
            WireValue::Len(_) => WIRE_LEN,
            WireValue::Fixed32(_) => WIRE_FIXED32,
        }
    }
}

/// One decoded field: its number and value, for a message decoder to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u32,
    pub value: WireValue<'a>,
}

impl<'a> Field<'a> {
    fn expect_varint(&self) -> Result<u64, WireError> {
        match self.value {
            WireValue::Varint(value) => Ok(value),
            other => Err(self.wrong(WIRE_VARINT, other)),
        }
    }

    fn wrong(&self, expected: u8, got: WireValue<'_>) -> WireError {
        WireError::WrongWireType {
            field: self.number,
            expected,
            got: got.wire_type(),
        }
    }

    /// An `int32` or enum: the low 32 bits of the varint, as protobuf parsers read it.
    pub fn int32(&self) -> Result<i32, WireError> {
        Ok(self.expect_varint()? as i32)
    }

    /// An `int64`.
    pub fn int64(&self) -> Result<i64, WireError> {
        Ok(self.expect_varint()? as i64)
    }

    /// A `uint32`: the low 32 bits of the varint.
    pub fn uint32(&self) -> Result<u32, WireError> {
        Ok(self.expect_varint()? as u32)
    }

    /// A `uint64`.
    pub fn uint64(&self) -> Result<u64, WireError> {
        self.expect_varint()
    }

    /// A `bool`: any non-zero varint is true.
    pub fn boolean(&self) -> Result<bool, WireError> {
        Ok(self.expect_varint()? != 0)
    }

    /// The bytes of a length-delimited field (an embedded message, a string, a packed list).
    pub fn len_bytes(&self) -> Result<&'a [u8], WireError> {
        match self.value {
            WireValue::Len(bytes) => Ok(bytes),
            other => Err(self.wrong(WIRE_LEN, other)),
        }
    }

    /// A `string`: length-delimited UTF-8.
    pub fn string(&self) -> Result<String, WireError> {
        let bytes = self.len_bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::BadUtf8 {
            field: self.number,
            prefix: hex(bytes),
        })
    }

    /// Appends the values of a `repeated int32` field: a parser must accept both the packed
    /// form (one length-delimited run of varints) and the unpacked one (one varint per field).
    pub fn push_int32s(&self, into: &mut Vec<i32>) -> Result<(), WireError> {
        match self.value {
            WireValue::Varint(value) => into.push(value as i32),
            WireValue::Len(bytes) => {
                let mut reader = Reader::new(bytes);
                while !reader.is_empty() {
                    into.push(reader.varint()? as i32);
                }
            }
            other => return Err(self.wrong(WIRE_VARINT, other)),
        }
        Ok(())
    }
}

/// The first bytes of `bytes` in hex, with the full length when cut.
fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(SHOWN_BYTES)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if bytes.len() > SHOWN_BYTES {
        format!("{shown}…({} bytes)", bytes.len())
    } else {
        shown
    }
}

/// Reads the fields of one message in wire order.
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.offset >= self.bytes.len()
    }

    /// Reads one varint.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.offset;
        let mut value = 0u64;
        for index in 0..VARINT_MAX_BYTES {
            let Some(&byte) = self.bytes.get(self.offset) else {
                return Err(WireError::Truncated {
                    offset: self.offset,
                });
            };
            self.offset += 1;
            // The 10th byte holds only bit 63: anything above it does not fit in 64 bits.
            if index == VARINT_MAX_BYTES - 1 && byte > 1 {
                return Err(WireError::VarintTooLong { offset: start });
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong { offset: start })
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self
            .offset
            .checked_add(N)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(WireError::Truncated {
                offset: self.offset,
            });
        };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.offset..end]);
        self.offset = end;
        Ok(out)
    }

    /// Reads the next field, or `None` at the end of the message.
    pub fn field(&mut self) -> Result<Option<Field<'a>>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key_offset = self.offset;
        let key = self.varint()?;
        let number = key >> 3;
        let wire_type = (key & 0x7) as u8;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(WireError::BadFieldNumber {
                field: number,
                offset: key_offset,
            });
        }
        let number = number as u32;
        let value = match wire_type {
            WIRE_VARINT => WireValue::Varint(self.varint()?),
            WIRE_FIXED64 => WireValue::Fixed64(u64::from_le_bytes(self.fixed::<8>()?)),
            WIRE_FIXED32 => WireValue::Fixed32(u32::from_le_bytes(self.fixed::<4>()?)),
            WIRE_LEN => {
                let len_offset = self.offset;
                let len = self.varint()?;
                let left = self.bytes.len() - self.offset;
                if len > left as u64 {
                    return Err(WireError::LengthOverrun {
                        field: number,
                        offset: len_offset,
                        len,
                        left,
                    });
                }
                let start = self.offset;
                self.offset += len as usize;
                WireValue::Len(&self.bytes[start..self.offset])
            }
            other => {
                return Err(WireError::BadWireType {
                    wire_type: other,
                    offset: key_offset,
                });
            }
        };
        Ok(Some(Field { number, value }))
    }
}

/// Calls `on_field` for every field of `bytes`; unknown fields are the callback's to skip, as
/// protobuf parsers skip fields they do not know.
pub fn each_field<'a>(
    bytes: &'a [u8],
    mut on_field: impl FnMut(Field<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        on_field(field)?;
    }
    Ok(())
}

/// Decodes a map entry (an embedded message with the key as field 1 and the value as field 2)
/// with the key and value decoders given; a missing key or value is its type's default.
pub fn map_entry<'a, K: Default, V: Default>(
    bytes: &'a [u8],
    key: impl Fn(&Field<'a>) -> Result<K, WireError>,
    value: impl Fn(&Field<'a>) -> Result<V, WireError>,
) -> Result<(K, V), WireError> {
    let mut entry = (K::default(), V::default());
    each_field(bytes, |field| {
        match field.number {
            1 => entry.0 = key(&field)?,
            2 => entry.1 = value(&field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(entry)
}

impl fmt::Debug for Encoder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Encoder({})", hex(&self.bytes))
    }
}
