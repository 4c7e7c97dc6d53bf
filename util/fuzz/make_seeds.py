#!/usr/bin/python3
"""make_seeds.py: write the seed corpora of proto_fuzz (corpus/proto/) and
mpjson_fuzz (corpus/mpjson/), one small file per case the code must handle,
named after it.  Run it again after changing a case; the files are
committed, so the fuzz targets and t/operations/test_fuzz_corpus.py do not
need it.

proto inputs are 2 bytes (the cap selector and split point, see
proto_fuzz.c) and a byte stream of length-prefixed msgpack frames; mpjson
inputs are 1 byte (0 JSON, 1 msgpack) and the message.
"""

import os
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))

# proto_fuzz.c caps[]: index -> largest payload
CAP_16, CAP_255, CAP_4096, CAP_DEFAULT = 2, 4, 5, 7


def frame(obj=None, raw=None):
    body = raw if raw is not None else msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def proto(cap=CAP_DEFAULT, split=0):
    return bytes([cap | (split >> 8) << 3 & 0xf8, split & 0xff])


def write(name, files):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.unlink(os.path.join(d, old))
    for fname, data in files.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


def proto_seeds():
    s = {}
    s["run"] = proto() + frame({"t": "run", "code": "print('hi')\n1 + 1",
                                "timeout_ms": 5000, "interactive": True})
    s["stdout_utf8"] = proto(split=7) + frame(
        {"t": "stdout", "text": "h\u00e9llo \u20ac \U0001d11e\n"})
    s["error_traceback"] = proto() + frame(
        {"t": "error", "ename": "ZeroDivisionError",
         "evalue": "division by zero",
         "traceback": ["Traceback (most recent call last):",
                       '  File "<cell 1>", line 1, in <module>',
                       "ZeroDivisionError: division by zero"]})
    s["result_complete"] = proto() + frame(
        {"t": "result", "text": "42", "count": 3}) + frame(
        {"t": "complete", "status": "ok", "count": 3, "ms": 12})
    s["control"] = proto() + frame(
        {"t": "create", "id": "0123456789abcdef0123456789abcdef",
         "lang": "python"}) + frame(
        {"t": "ok", "id": "0123456789abcdef0123456789abcdef",
         "pid": 4242}) + frame(
        {"t": "fail", "errcode": "no_such_session", "message": "gone"})
    s["input"] = proto() + frame(
        {"t": "input_request", "id": "7", "prompt": "name? ",
         "password": 1}) + frame({"t": "input", "text": "bob", "id": "7"})
    s["every_type"] = proto() + b"".join(
        frame({"t": t}) for t in
        ("run", "stdout", "stderr", "result", "error", "input_request",
         "input", "interrupt", "complete", "create", "kill", "ok", "fail"))
    # every way msgpack may spell a string or an integer
    s["encodings"] = proto() + frame(raw=(
        b"\x87"                                     # map of 7
        b"\xa1t\xa6stderr"                          # fixstr
        b"\xd9\x04text\xc4\x03a\xffb"               # str8 key, bin8 value
        b"\xda\x00\x02id\xdb\x00\x00\x00\x00"       # str16 key, empty str32
        b"\xa5count\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"  # uint64 max int64
        b"\xa2ms\xd3\x80\x00\x00\x00\x00\x00\x00\x00"     # int64 min
        b"\xa3pid\xc3"                              # true as an integer
        b"\xa9traceback\x90"))                      # empty array
    s["uint64_over"] = proto() + frame(raw=(
        b"\x82\xa1t\xa8complete\xa5count\xcf\x80\x00\x00\x00\x00\x00\x00"
        b"\x00"))
    s["unknown_keys"] = proto() + frame(
        {"t": "stdout", "text": "x", "future": {"nested": [1, 2.5, None]},
         "t2": "run"})
    s["duplicate_keys"] = proto() + frame(raw=(
        b"\x83\xa1t\xa3run\xa4code\xa11\xa4code\xa12"))
    s["type_last_wins"] = proto() + frame(raw=(
        b"\x82\xa1t\xa3run\xa1t\xa4nope"))
    s["empty_strings"] = proto() + frame(raw=(
        b"\x83\xa1t\xa5error\xa5ename\xa0\xa9traceback\x92\xa0\xa0"))
    # malformed payloads
    s["not_a_map"] = proto() + frame(["t", "run"])
    s["int_key"] = proto() + frame(raw=b"\x82\xa1t\xa3run\x01\x02")
    s["type_not_str"] = proto() + frame({"t": 5})
    s["unknown_type"] = proto() + frame({"t": "launch", "code": "x"})
    s["no_type"] = proto() + frame({"code": "x"})
    s["wrong_kind"] = proto() + frame({"t": "run", "code": 5})
    s["traceback_int"] = proto() + frame({"t": "error", "traceback": ["a", 1]})
    s["int_as_str"] = proto() + frame({"t": "complete", "count": "3"})
    s["float_int"] = proto() + frame({"t": "complete", "ms": 1.5})
    s["trailing"] = proto() + frame(raw=msgpack.packb({"t": "ok"}) + b"\xc0")
    s["truncated_map"] = proto() + frame(raw=b"\x83\xa1t\xa3run\xa4code")
    s["empty_payload"] = proto() + frame(raw=b"")
    s["ext_value"] = proto() + frame(raw=b"\x82\xa1t\xa2ok\xa2id\xd4\x01\x00")
    s["deep_unknown"] = proto() + frame(
        raw=b"\x82\xa1t\xa2ok\xa1x" + b"\x91" * 100 + b"\xc0")
    # msgpack-c allocates a declared array up front (16M objects here)
    s["huge_array"] = proto() + frame(
        raw=b"\x82\xa1t\xa2ok\xa9traceback\xdd\x01\x00\x00\x00")
    # the length prefix
    s["over_cap"] = proto(cap=CAP_16) + frame({"t": "stdout", "text": "x" * 40})
    s["under_cap"] = proto(cap=CAP_16) + frame(raw=b"\x81\xa1t\xa4kill")
    s["partial"] = proto() + frame({"t": "stdout", "text": "abc"})[:-2]
    s["header_only"] = proto() + b"\x00\x00"
    s["max_prefix"] = proto(cap=CAP_DEFAULT) + b"\xff\xff\xff\xff\x80"
    # UTF-8 for the sanitizer and the cut (the stream is also plain text)
    s["utf8_valid"] = proto(split=9) + "a\u00e9\u20ac\U0001f600z".encode()
    s["utf8_cut_lead"] = proto(split=3) + b"ab\xf0\x9f\x98\x80"
    s["utf8_invalid"] = proto(split=5) + (
        b"\xc0\x80\xed\xa0\x80\xf5\x80\xf4\x90\x80\x80\xe0\x80\x80"
        b"\xff\xfe\x80\xbf\xe2\x82")
    s["utf8_truncated_tail"] = proto(split=4) + b"ok\xe2\x82"
    return s


def mp(obj):
    return b"\x01" + msgpack.packb(obj, use_bin_type=True)


def js(text):
    return b"\x00" + (text.encode() if isinstance(text, str) else text)


def nest(n, inner="1"):
    return "[" * n + inner + "]" * n


def mpjson_seeds():
    s = {}
    run = {"type": "run", "id": "r1", "code": "print(1)", "timeout_ms": 1000}
    s["json_run"] = js('{"type":"run","id":"r1","code":"print(1)",'
                       '"timeout_ms":1000}')
    s["json_command"] = js('{"command":"x","tx_policy":"commit_always",'
                           '"timeout_ms":null}')
    s["json_bad_fields"] = js('{"code":"x","timeout_ms":0,"tx_policy":"no",'
                              '"cwd":"/","env":{}}')
    s["json_timeout_kinds"] = js('[{"code":"x","timeout_ms":1.5},'
                                 '{"code":"x","timeout_ms":"5"},'
                                 '{"code":"x","timeout_ms":3600001}]')
    s["json_input"] = js('{"type":"input","value":"42","request_id":"abc"}')
    s["json_interrupt"] = js('{"type":"interrupt","id":7}')
    s["json_duplicate"] = js('{"code":"a","code":"b"}')
    s["json_escapes"] = js('{"code":"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/"}')
    s["json_lone_surrogate"] = js('{"code":"\\ud800"}')
    s["json_nul"] = js('{"code":"a\\u0000b"}')
    s["json_raw_utf8"] = js('{"k\u00e9y":"\u20ac\U0001f600"}')
    s["json_bad_utf8"] = js(b'{"code":"\xc0\x80"}')
    s["json_numbers"] = js('[1e308,-0.0,9223372036854775807,'
                           '-9223372036854775808,1.5e-320,0,-1,3.14]')
    s["json_int_overflow"] = js('[9223372036854775808]')
    s["json_real_overflow"] = js('[1e999]')
    s["json_depth_64"] = js(nest(64))
    s["json_depth_65"] = js(nest(65))
    s["json_long_key"] = js('{"' + "k" * 300 + '":1}')
    s["json_key_255"] = js('{"' + "k" * 255 + '":1}')
    s["json_scalar"] = js('"just a string"')
    s["json_trailing"] = js('{"a":1} x')
    s["json_empty"] = js("")
    s["json_truncated"] = js('{"code":"pri')
    s["json_empty_containers"] = js('{"a":{},"b":[],"":""}')
    s["mp_run"] = mp(run)
    s["mp_scalars"] = mp({"n": None, "t": True, "f": False,
                          "u": 2 ** 64 - 1 >> 1, "i": -2 ** 63,
                          "d": 2.5, "s": "", "a": [1, -1, 0.0]})
    s["mp_float32"] = b"\x01\x81\xa1f\xca\x3f\xc0\x00\x00"
    s["mp_nan"] = b"\x01\x81\xa1f\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
    s["mp_inf32"] = b"\x01\x91\xca\x7f\x80\x00\x00"
    s["mp_uint64_max"] = b"\x01\x91\xcf" + b"\xff" * 8
    s["mp_bin"] = b"\x01\x81\xa4code\xc4\x01x"
    s["mp_ext"] = b"\x01\x81\xa1e\xd4\x01\x00"
    s["mp_int_key"] = b"\x01\x81\x01\x02"
    s["mp_empty_strings"] = b"\x01\x83\xa0\xa0\xa1a\x92\xa0\xa0\xa1b\xd9\x00"
    s["mp_key_nul"] = b"\x01\x81\xa3a\x00b\x01"
    s["mp_key_256"] = b"\x01\x81\xd9\xff" + b"k" * 255 + b"\x01"
    s["mp_key_long"] = b"\x01\x81\xda\x01\x00" + b"k" * 256 + b"\x01"
    s["mp_key_bad_utf8"] = b"\x01\x81\xa2\xc0\x80\x01"
    s["mp_str_bad_utf8"] = b"\x01\x81\xa4code\xa3\xed\xa0\x80"
    s["mp_str_nul"] = b"\x01\x81\xa4code\xa3a\x00b"
    s["mp_duplicate"] = b"\x01\x82\xa4code\xa1a\xa4code\xa1b"
    s["mp_trailing"] = mp({"type": "interrupt"}) + b"\xc1\xc1"
    s["mp_depth_64"] = b"\x01" + b"\x91" * 64 + b"\x01"
    s["mp_depth_65"] = b"\x01" + b"\x91" * 65 + b"\x01"
    s["mp_truncated"] = mp(run)[:-3]
    s["mp_huge_array"] = b"\x01\x81\xa1a\xdd\x10\x00\x00\x00"
    s["mp_input"] = mp({"type": "input", "value": "yes", "request_id": 5})
    return s


if __name__ == "__main__":
    write("proto", proto_seeds())
    write("mpjson", mpjson_seeds())
