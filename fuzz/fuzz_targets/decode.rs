//! Every decoder a client's bytes reach: framing, the handshake, request headers and bodies
//! for every opcode, and multi records. None may panic or allocate without bound.
#![no_main]

use ferrozk_proto::frame::{check_frame, FrameCheck};
use ferrozk_proto::{ConnectRequest, Decode, MultiResponse, Reader, Request, RequestHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check_frame(data, 1 << 20);
    let _ = ConnectRequest::decode(&mut Reader::new(data));
    let _ = MultiResponse::decode(&mut Reader::new(data));
    let mut r = Reader::new(data);
    if let Ok(h) = RequestHeader::decode(&mut r) {
        if let Ok(req) = Request::decode(h.op, &mut r) {
            let mut out = Vec::new();
            req.encode_body(&mut out);
        }
    }
    if let FrameCheck::Complete(len) = check_frame(data, 1 << 20) {
        let _ = Request::decode(data.first().copied().unwrap_or(0) as i32 % 110, &mut Reader::new(&data[4..4 + len]));
    }
});
