"""tether_proto.py -- a small protobuf wire codec for the tether.v1.proto tests.

Debian 12 has no protoc for Python here (only protoc-c), so the integration
tests read protos/client.proto themselves and encode/decode the proto3 wire
format directly. Only what client.proto uses is supported: scalar fields
(string, bytes, bool, int32/64, uint32/64, double, float), nested messages,
`repeated`, `map<K, V>` and `oneof`. Parsing the .proto at run time keeps the
codec in step with the schema without a generated copy.

Frames are exchanged as plain dicts: ClientFrame/ServerFrame become
{"type": <oneof member>, **fields}, so tests written for the JSON sub-protocol
read the same way (see tether_client.py for the JSON <-> proto mapping).
"""

import re
import struct

VARINT_TYPES = {"int32", "int64", "uint32", "uint64", "bool", "sint32", "sint64"}
FIXED64_TYPES = {"double", "fixed64", "sfixed64"}
FIXED32_TYPES = {"float", "fixed32", "sfixed32"}
LEN_TYPES = {"string", "bytes"}


class Field:
    """One field of a message: number, type, and how it repeats."""

    def __init__(self, name, number, ftype, label=None, oneof=None, key_type=None):
        self.name = name
        self.number = number
        self.type = ftype            # scalar type name or message name
        self.label = label           # None, "repeated" or "map"
        self.oneof = oneof           # name of the enclosing oneof, if any
        self.key_type = key_type     # for maps


class Schema:
    """Messages parsed from one .proto file (no imports, no nesting)."""

    def __init__(self, text):
        self.messages = {}
        self._parse(re.sub(r"//[^\n]*", "", text))

    # ---- parsing -------------------------------------------------------------
    _FIELD = re.compile(
        r"(repeated\s+)?(?:map\s*<\s*(\w+)\s*,\s*(\w+)\s*>|(\w+))\s+(\w+)\s*=\s*(\d+)\s*(?:\[[^\]]*\])?\s*;")

    def _parse(self, text):
        for m in re.finditer(r"\bmessage\s+(\w+)\s*\{", text):
            name = m.group(1)
            body, _ = self._block(text, m.end())
            self.messages[name] = self._fields(body)

    @staticmethod
    def _block(text, start):
        """Returns the text between the '{' just before start and its '}'."""
        depth = 1
        i = start
        while depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        return text[start:i - 1], i

    def _fields(self, body):
        fields = {}
        oneofs = []
        for m in re.finditer(r"\boneof\s+(\w+)\s*\{", body):
            inner, end = self._block(body, m.end())
            oneofs.append((m.start(), end, m.group(1), inner))
        for start, end, oname, inner in oneofs:
            for f in self._FIELD.finditer(inner):
                fld = self._field(f, oneof=oname)
                fields[fld.name] = fld
        outer = body
        for start, end, _, _ in reversed(oneofs):
            outer = outer[:start] + outer[end:]
        for f in self._FIELD.finditer(outer):
            fld = self._field(f)
            fields[fld.name] = fld
        return fields

    @staticmethod
    def _field(m, oneof=None):
        repeated, ktype, vtype, ftype, name, number = m.groups()
        if ktype:
            return Field(name, int(number), vtype, "map", oneof, key_type=ktype)
        return Field(name, int(number), ftype, "repeated" if repeated else None, oneof)

    # ---- encoding ------------------------------------------------------------
    def encode(self, msg_name, value):
        """Encodes dict `value` as message `msg_name`. Scalars equal to the
        proto3 default are omitted, except inside a oneof (presence matters)."""
        fields = self.messages[msg_name]
        out = bytearray()
        for key, v in value.items():
            fld = fields.get(key)
            if fld is None:
                raise KeyError("%s has no field %r" % (msg_name, key))
            if fld.label == "map":
                for mk, mv in v.items():
                    entry = self._scalar_or_msg(1, fld.key_type, mk, force=True)
                    entry += self._scalar_or_msg(2, fld.type, mv, force=True)
                    out += _key(fld.number, 2) + _varint(len(entry)) + entry
            elif fld.label == "repeated":
                for item in v:
                    out += self._scalar_or_msg(fld.number, fld.type, item, force=True)
            else:
                out += self._scalar_or_msg(fld.number, fld.type, v, force=fld.oneof is not None)
        return bytes(out)

    def _scalar_or_msg(self, number, ftype, v, force=False):
        if v is None:
            return b""
        if ftype in self.messages:
            body = self.encode(ftype, v)
            return _key(number, 2) + _varint(len(body)) + body
        if not force and v in (0, False, "", b"", 0.0):
            return b""
        if ftype in VARINT_TYPES:
            n = int(v)
            if ftype.startswith("sint"):
                n = (n << 1) ^ (n >> 63)
            return _key(number, 0) + _varint(n & 0xFFFFFFFFFFFFFFFF)
        if ftype in FIXED64_TYPES:
            fmt = {"double": "<d", "fixed64": "<Q", "sfixed64": "<q"}[ftype]
            return _key(number, 1) + struct.pack(fmt, v)
        if ftype in FIXED32_TYPES:
            fmt = {"float": "<f", "fixed32": "<I", "sfixed32": "<i"}[ftype]
            return _key(number, 5) + struct.pack(fmt, v)
        if ftype in LEN_TYPES:
            b = v.encode() if isinstance(v, str) else bytes(v)
            return _key(number, 2) + _varint(len(b)) + b
        raise TypeError("unsupported proto type %s" % ftype)

    # ---- decoding ------------------------------------------------------------
    def decode(self, msg_name, data):
        """Decodes bytes into a dict with every non-oneof field present
        (proto3 defaults for absent scalars, None for absent messages)."""
        fields = self.messages[msg_name]
        by_num = {f.number: f for f in fields.values()}
        out = {}
        for f in fields.values():
            if f.oneof:
                continue
            if f.label == "map":
                out[f.name] = {}
            elif f.label == "repeated":
                out[f.name] = []
            elif f.type in self.messages:
                out[f.name] = None
            else:
                out[f.name] = _default(f.type)
        for number, wt, raw in _iter_fields(data):
            fld = by_num.get(number)
            if fld is None:
                continue            # unknown field: skip, as proto3 does
            if fld.label == "map":
                entry = {n: (w, r) for n, w, r in _iter_fields(raw)}
                k = self._value(fld.key_type, *entry[1]) if 1 in entry else _default(fld.key_type)
                if 2 in entry:
                    val = self._value(fld.type, *entry[2])
                elif fld.type in self.messages:
                    val = self.decode(fld.type, b"")
                else:
                    val = _default(fld.type)
                out[fld.name][k] = val
            elif fld.label == "repeated":
                if wt == 2 and fld.type not in self.messages and fld.type not in LEN_TYPES:
                    out[fld.name].extend(_unpack_packed(fld.type, raw))
                else:
                    out[fld.name].append(self._value(fld.type, wt, raw))
            else:
                out[fld.name] = self._value(fld.type, wt, raw)
        return out

    def _value(self, ftype, wt, raw):
        if ftype in self.messages:
            return self.decode(ftype, raw)
        if ftype == "string":
            return raw.decode("utf-8")
        if ftype == "bytes":
            return bytes(raw)
        if ftype == "bool":
            return bool(raw)
        if ftype in ("int64", "int32"):
            return raw - (1 << 64) if raw >= 1 << 63 else raw
        if ftype in ("sint32", "sint64"):
            return (raw >> 1) ^ -(raw & 1)
        if ftype in VARINT_TYPES:
            return raw
        if ftype == "double":
            return struct.unpack("<d", raw)[0]
        if ftype == "float":
            return struct.unpack("<f", raw)[0]
        if ftype in ("fixed64", "fixed32"):
            return int.from_bytes(raw, "little")
        if ftype in ("sfixed64", "sfixed32"):
            return int.from_bytes(raw, "little", signed=True)
        raise TypeError("unsupported proto type %s" % ftype)

    # ---- frames --------------------------------------------------------------
    def encode_frame(self, msg_name, frame_type, body):
        """ClientFrame/ServerFrame: the oneof member `frame_type` set to body."""
        return self.encode(msg_name, {frame_type: body or {}})

    def decode_frame(self, msg_name, data):
        """Returns (oneof member name, decoded body) of a *Frame message."""
        fields = self.messages[msg_name]
        by_num = {f.number: f for f in fields.values()}
        found = None
        for number, wt, raw in _iter_fields(data):
            fld = by_num.get(number)
            if fld is not None and fld.oneof:
                found = (fld.name, self._value(fld.type, wt, raw))   # last one wins
        if found is None:
            raise ValueError("%s with no frame set" % msg_name)
        return found


def _default(ftype):
    if ftype in ("string",):
        return ""
    if ftype == "bytes":
        return b""
    if ftype == "bool":
        return False
    if ftype in ("double", "float"):
        return 0.0
    return 0


def _key(number, wire_type):
    return _varint((number << 3) | wire_type)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data, i):
    shift = 0
    result = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _iter_fields(data):
    """Yields (field number, wire type, raw) where raw is an int for varints
    and bytes otherwise."""
    i = 0
    data = bytes(data)
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(data, i)
        elif wt == 1:
            v, i = data[i:i + 8], i + 8
        elif wt == 2:
            n, i = _read_varint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        if i > len(data):
            raise ValueError("truncated field %d" % number)
        yield number, wt, v


def _unpack_packed(ftype, raw):
    vals = []
    i = 0
    while i < len(raw):
        if ftype in FIXED64_TYPES:
            vals.append(struct.unpack("<d" if ftype == "double" else "<Q", raw[i:i + 8])[0])
            i += 8
        elif ftype in FIXED32_TYPES:
            vals.append(struct.unpack("<f" if ftype == "float" else "<I", raw[i:i + 4])[0])
            i += 4
        else:
            v, i = _read_varint(raw, i)
            vals.append(bool(v) if ftype == "bool" else v)
    return vals
