"""The chamber's ASCII serial line protocol: the message set as data, and a sans-I/O codec.

Both ends use this package: the controller's `SerialDriver` and the emulated chamber's serial
server. It does no I/O and knows no event loop, so every rule of the wire is tested from byte
strings alone, and a third party can reuse it on any transport. The spec a human reads is
docs/serial-protocol.md; its example frames are asserted by
tests/unit/drivers/codecs/test_serial_protocol.py.

Three layers, each its own module: `framing` (checksummed lines, the resynchronising decoder),
`messages` (the requests and ERR codes as data) and `payloads` (requests and replies to and
from their text). This module is the package's public surface.
"""
from drivers.codecs.serial_protocol.framing import (
    CHECKSUM_MARK,
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    TERMINATOR,
    Decoded,
    FaultKind,
    Frame,
    FrameDecoder,
    FrameFault,
    checksum,
    decode_line,
    encode_frame,
    main,
)
from drivers.codecs.serial_protocol.messages import (
    ERRORS,
    PROTOCOL_VERSION,
    REQUESTS,
    DeviceReplyError,
    ErrorCode,
    ErrorSpec,
    ProtocolError,
    RequestKind,
    RequestSpec,
)
from drivers.codecs.serial_protocol.payloads import (
    ErrorReply,
    HeartbeatReply,
    IdentityReply,
    InputValue,
    OkReply,
    OutputsReply,
    ReadReply,
    Reply,
    Request,
    SetReply,
    StatusReply,
    encode_reply,
    encode_request,
    error_for_reply,
    format_number,
    parse_number,
    parse_reply,
    parse_request,
    reply_kind,
)

__all__ = [
    "CHECKSUM_MARK",
    "ERRORS",
    "MAX_FRAME_BYTES",
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "REQUESTS",
    "TERMINATOR",
    "Decoded",
    "DeviceReplyError",
    "ErrorCode",
    "ErrorReply",
    "ErrorSpec",
    "FaultKind",
    "Frame",
    "FrameDecoder",
    "FrameFault",
    "HeartbeatReply",
    "IdentityReply",
    "InputValue",
    "OkReply",
    "OutputsReply",
    "ProtocolError",
    "ReadReply",
    "Reply",
    "Request",
    "RequestKind",
    "RequestSpec",
    "SetReply",
    "StatusReply",
    "checksum",
    "decode_line",
    "encode_frame",
    "encode_reply",
    "encode_request",
    "error_for_reply",
    "format_number",
    "main",
    "parse_number",
    "parse_reply",
    "parse_request",
    "reply_kind",
]
