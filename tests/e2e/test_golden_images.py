"""test_golden_images.py — /rest/golden-images end to end: streamed multipart
uploads (HPE zip and raw imported while they arrive, qcow2 by a task),
downloads as the HPE zip, the import log, PUT, DELETE, hostile uploads that
must leave nothing behind, roles checked before the body is read, the storage
quota, the CLI, and an image usable before its SHA-256 is known (pending
across a restart).

Multipart bodies are built by hand and streamed with http.client (standard
library only), in the shapes the HPE SDKs send them.
"""
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zipfile

import harness

DEV_BUNDLE = os.path.join(harness.RESEARCH, "bundles", "HewlettPackard__image-streamer-tools",
                          "HPE-ImageStreamer-Developer-2017-08-28-v5.0.zip")
PY_BOUNDARY = "----------ThIs_Is_tHe_bouNdaRY_$"


# -- helpers ------------------------------------------------------------------
def part_head(boundary, name, filename=None, ctype=None, quote=True):
    disp = 'form-data; name="%s"' % name
    if filename is not None:
        disp += '; filename="%s"' % filename if quote else "; filename=%s" % filename
    h = "--%s\r\nContent-Disposition: %s\r\n" % (boundary, disp)
    if ctype:
        h += "Content-Type: %s\r\n" % ctype
    return (h + "\r\n").encode("utf-8", "surrogateescape")


class Body:
    """A multipart/form-data body streamed in 1 MiB chunks: form fields,
    then the file (a path or bytes) as the part `file_field`."""

    def __init__(self, filename, data=None, path=None, fields=(), file_field="file",
                 boundary="streamer-test-boundary-7MA4YWxkTrZu0gW", quote=True, tail=True):
        self.boundary = boundary
        head = b""
        for k, v in fields:
            head += part_head(boundary, k) + v.encode() + b"\r\n"
        if file_field is not None:
            head += part_head(boundary, file_field, filename, "application/octet-stream", quote)
        self.head = head
        self.data, self.path = data, path
        self.tail = (b"\r\n" if file_field is not None else b"") + \
            (("--%s--\r\n" % boundary).encode() if tail else b"")
        size = len(data) if data is not None else (os.path.getsize(path) if path else 0)
        self.length = len(self.head) + size + len(self.tail)

    def content_type(self):
        return "multipart/form-data; boundary=%s" % self.boundary

    def chunks(self):
        yield self.head
        if self.data is not None:
            for i in range(0, len(self.data), 1 << 20):
                yield self.data[i:i + (1 << 20)]
        elif self.path:
            with open(self.path, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    yield b
        yield self.tail


def upload(srv, body, query="", token=None, headers=None, target="/rest/golden-images"):
    """POST body (a Body, streamed) to target + query; the Response."""
    h = {"X-API-Version": "2020", "auth": token or srv.token, "Content-Type": body.content_type(),
         "Content-Length": str(body.length)}
    if headers:
        h.update(headers)
    c = srv.connection()
    c.timeout = 120
    try:
        c.putrequest("POST", target + query)
        for k, v in h.items():
            c.putheader(k, v)
        c.endheaders()
        try:
            for chunk in body.chunks():
                c.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the body was read: the answer is waiting
        r = c.getresponse()
        return harness.Response(r.status, {k.lower(): v for k, v in r.getheaders()},
                                r.read().decode("utf-8", "replace"))
    finally:
        c.close()


def upload_ok(srv, body, query=""):
    """Upload, expect 202 and a Completed task; return the golden image."""
    r = upload(srv, body, query)
    assert r.status == 202, r
    assert r.headers["location"].startswith("/rest/tasks/"), r.headers
    t = r.json()
    assert t["type"] == "TaskResourceV2" and t["uri"] == r.headers["location"], t
    t = srv.wait_task(t["uri"], timeout=120)
    assert t["taskState"] == "Completed", t
    assert t["taskErrors"] == [], t
    assert t["percentComplete"] == 100, t
    gi = srv.request("GET", t["associatedResource"]["resourceUri"])
    assert gi.status == 200, gi
    return gi.json()


def upload_fails(srv, body, query="", status=None, code=None):
    """An upload that must fail: at once with a 4xx error document, or as a
    202 whose task ends in Error with taskErrors. Returns the error object."""
    r = upload(srv, body, query)
    if r.status == 202:
        t = srv.wait_task(r.json()["uri"], timeout=60)
        assert t["taskState"] == "Error", t
        assert len(t["taskErrors"]) == 1, t
        err = t["taskErrors"][0]
    else:
        assert 400 <= r.status < 500, r
        assert r.headers["content-type"] == "application/json", r.headers
        err = r.json()
        if status:
            assert r.status == status, r
    assert err["errorCode"] and err["message"], err
    if code:
        assert err["errorCode"] == code, err
    return err


def download(srv, gi):
    c = srv.connection()
    c.timeout = 120
    try:
        c.request("GET", "/rest/golden-images/download/" + gi["id"],
                  headers={"X-API-Version": "2020", "auth": srv.token})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def raw_of_zip(data):
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    assert len(names) == 1, names
    assert z.testzip() is None
    return names[0], z.read(names[0])


def dir_files(srv, sub):
    d = os.path.join(srv.data_dir, "volumes", sub)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def importing(srv):
    """The temp files of imports in progress (DATA/volumes/golden/.<id>.tmp)."""
    return [f for f in dir_files(srv, "golden") if f.endswith(".tmp")]


def golden_ids(srv):
    return sorted(m["id"] for m in srv.request("GET", "/rest/golden-images").json()["members"])


def pattern(n_mib):
    """A disk image with recognisable data and holes."""
    out = bytearray(n_mib << 20)
    for i in range(0, len(out), 65536 * 3):
        block = hashlib.sha256(b"block %d" % i).digest() * 2048
        out[i:i + len(block)] = block[:min(len(block), len(out) - i)]
    return bytes(out)


def qemu_img(*args):
    subprocess.run(["qemu-img"] + list(args), check=True, capture_output=True)


def readonly_user(srv, name="viewer", role="Read only"):
    r = srv.request("POST", "/rest/users", {"userName": name, "password": "Passw0rd-long-enough",
                                           "permissions": [{"roleName": role}]})
    assert r.status == 201, r
    return srv.login(name, "Passw0rd-long-enough")


# -- 1: HPE's own golden image ---------------------------------------------------
def test_hpe_developer_image(srv):
    tmp = tempfile.mkdtemp(prefix="streamer-gi-")
    try:
        with zipfile.ZipFile(DEV_BUNDLE) as b:
            gi_json = [n for n in b.namelist() if n.endswith("_goldenimage.json")][0]
            member = json.loads(b.read(gi_json))["name"]  # the payload is named after the image
            payload = os.path.join(tmp, "developer.zip")
            with open(payload, "wb") as f:
                f.write(b.read(member))
        with zipfile.ZipFile(payload) as z:
            (inner,) = z.namelist()
            raw = z.read(inner)
        assert len(raw) == 104857600
        t0 = time.time()
        gi = upload_ok(srv, Body("developer.zip", path=payload, boundary=PY_BOUNDARY),
                       "?name=HPE%20Developer%20UEFI&description=")
        up = time.time() - t0
        assert gi["type"] == "GoldenImage" and gi["category"] == "golden-images"
        assert gi["name"] == "HPE Developer UEFI" and gi["description"] == ""
        assert gi["uri"] == "/rest/golden-images/" + gi["id"]
        assert gi["checkSum"] == hashlib.sha256(raw).hexdigest()
        assert gi["size"] == 104857600
        assert gi["format"] == "hpe-zip" and gi["status"] == "OK"
        assert 0 < gi["allocatedBytes"] <= gi["size"]
        for k, v in {"imageCapture": False, "importedFromBundle": False, "readOnly": False,
                     "artifactBundleCategory": "artifact-bundles", "osVolumeCategory": "os-volumes",
                     "osVolumeURI": None, "buildPlanUri": None, "dependentArtifacts": []}.items():
            assert gi[k] == v, (k, gi)
        for hidden in ("member", "importLog"):
            assert hidden not in gi, gi
        t0 = time.time()
        status, headers, data = download(srv, gi)
        down = time.time() - t0
        assert status == 200, (status, data[:300])
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"] == 'attachment; filename="HPE Developer UEFI.zip"'
        assert int(headers["content-length"]) == len(data)
        name, got = raw_of_zip(data)
        assert name == inner  # HPE's member name (a UUID) is kept
        assert got == raw
        log = srv.request("GET", "/rest/golden-images/archive/" + gi["id"])
        assert log.status == 200 and log.headers["content-type"].startswith("text/plain"), log
        assert gi["checkSum"] in log.body and "received" in log.body, log.body
        print("    developer image: upload+import %.2fs, download %.2fs" % (up, down))
        assert dir_files(srv, "uploads") == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- 2, 3: qcow2 and raw -----------------------------------------------------------
def test_qcow2_and_raw(srv):
    tmp = tempfile.mkdtemp(prefix="streamer-gi-")
    try:
        raw = pattern(8)
        rawp = os.path.join(tmp, "disk.raw")
        with open(rawp, "wb") as f:
            f.write(raw)
        q = os.path.join(tmp, "disk.qcow2")
        qemu_img("create", "-f", "qcow2", q, "8M")
        qemu_img("convert", "-f", "raw", "-O", "qcow2", rawp, q)
        gi = upload_ok(srv, Body("disk.qcow2", path=q), "?name=From%20qcow2")
        assert gi["format"] == "qcow2" and gi["size"] == len(raw), gi
        assert gi["checkSum"] == hashlib.sha256(raw).hexdigest()
        assert gi["allocatedBytes"] < gi["size"]  # the holes stay holes
        status, _, data = download(srv, gi)
        assert status == 200
        assert raw_of_zip(data)[1] == raw

        # .img: raw; the name comes from the file name, quotes and Windows path stripped
        img = pattern(2)
        b = Body(r"C:\images\web-01.img", data=img, quote=False)
        gi2 = upload_ok(srv, b, "?name=&description=")
        assert gi2["name"] == "web-01" and gi2["format"] == "raw", gi2
        assert gi2["checkSum"] == hashlib.sha256(img).hexdigest()
        status, _, data = download(srv, gi2)
        assert raw_of_zip(data)[1] == img
        # metadata as form fields (the Ruby and Java SDKs)
        gi3 = upload_ok(srv, Body("x.raw", data=img, fields=[("name", "Form named"),
                                                                ("description", "from the form")]))
        assert gi3["name"] == "Form named" and gi3["description"] == "from the form", gi3
        # the query wins over the form
        gi4 = upload_ok(srv, Body("x.raw", data=img, fields=[("name", "ignored")]),
                        "?name=Query%20named&description=q")
        assert gi4["name"] == "Query named" and gi4["description"] == "q", gi4
        # a re-upload of a download is the same image
        status, _, z = download(srv, gi)
        gi5 = upload_ok(srv, Body("again.ZIP", data=z))
        assert gi5["checkSum"] == gi["checkSum"] and gi5["format"] == "hpe-zip"
        listed = srv.request("GET", "/rest/golden-images?filter=format='raw'&sort=name:asc").json()
        assert [m["name"] for m in listed["members"]] == ["Form named", "Query named", "web-01"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- 4: hostile uploads ------------------------------------------------------------------
def zip_bytes(members, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def test_hostile_uploads(srv):
    before = golden_ids(srv)
    golden_before = dir_files(srv, "golden")
    tmp = tempfile.mkdtemp(prefix="streamer-gi-")
    try:
        disk = os.urandom(64 << 10)
        cases = []
        cases.append(("wrong extension", Body("disk.txt", data=disk), 415, "UNSUPPORTED_IMAGE_FORMAT"))
        cases.append(("no extension", Body("disk", data=disk), 415, None))
        cases.append(("missing file field", Body(None, fields=[("name", "x")], file_field=None), 400,
                      "UPLOAD_NO_FILE"))
        cases.append(("file part without file name", Body(None, data=disk), 400, None))
        cases.append(("two members", Body("two.zip", data=zip_bytes([("a.raw", disk), ("b.raw", disk)])),
                      None, "IMAGE_ZIP_MEMBERS"))
        cases.append(("../ member", Body("evil.zip", data=zip_bytes([("../evil.raw", disk)])), None,
                      "IMAGE_ZIP_PATH"))
        good = zip_bytes([("disk.raw", disk)])
        i = good.index(disk[:64])
        bad_crc = good[:i + 100] + bytes([good[i + 100] ^ 0xff]) + good[i + 101:]
        cases.append(("crc mismatch", Body("crc.zip", data=bad_crc), None, "IMAGE_CRC_MISMATCH"))
        cases.append(("truncated zip", Body("cut.zip", data=good[:len(good) // 2]), None, None))
        deflated = zip_bytes([("disk.raw", pattern(1))], zipfile.ZIP_DEFLATED)
        cases.append(("truncated deflate", Body("cut2.zip", data=deflated[:len(deflated) - 200]), None, None))
        cases.append(("garbage zip", Body("garbage.zip", data=os.urandom(100000)), None, None))
        cases.append(("size not a multiple of 512", Body("odd.img", data=os.urandom(1000)), None,
                      "IMAGE_NOT_A_DISK"))
        base = os.path.join(tmp, "base.raw")
        with open(base, "wb") as f:
            f.write(disk)
        over = os.path.join(tmp, "over.qcow2")
        qemu_img("create", "-f", "qcow2", "-b", base, "-F", "raw", over)
        cases.append(("qcow2 with a backing file", Body("over.qcow2", path=over), None, "IMAGE_UNSUPPORTED"))
        cases.append(("qcow2 that is not", Body("fake.qcow2", data=disk), None, None))
        cases.append(("empty file", Body("empty.img", data=b""), 400, "UPLOAD_EMPTY_FILE"))
        # two file parts: the second one appended by hand
        two = Body("a.img", data=disk)
        two.tail = b"\r\n" + part_head(two.boundary, "file", "b.img", "application/octet-stream") + \
            disk + ("\r\n--%s--\r\n" % two.boundary).encode()
        two.length = len(two.head) + len(disk) + len(two.tail)
        cases.append(("two files", two, 400, "UPLOAD_MULTIPLE_FILES"))
        cases.append(("no closing boundary", Body("open.img", data=disk, tail=False), 400,
                      "INVALID_MULTIPART"))
        cases.append(("bad name in the form", Body("n.img", data=disk, fields=[("name", "a/b")]), 400,
                      "INVALID_NAME"))
        cases.append(("bad name in the query", Body("n.img", data=disk), 400, "INVALID_NAME"))
        latin1 = Body("n.img", data=disk)
        latin1.head = part_head(latin1.boundary, "description") + "caf\xe9".encode("latin-1") + b"\r\n" + latin1.head
        latin1.length += len(part_head(latin1.boundary, "description")) + 6
        cases.append(("description not UTF-8", latin1, 400, "INVALID_FIELD"))
        cases.append(("name not UTF-8 in the query", Body("n.img", data=disk), 400, "INVALID_NAME"))
        cases.append(("file name not UTF-8", Body("caf\udce9.img", data=disk), 400, "INVALID_NAME"))
        cases.append(("file name not UTF-8, bad extension", Body("caf\udce9.txt", data=disk), 415, None))
        for what, body, status, code in cases:
            q = {"bad name in the query": "?name=bad%23name",
                 "name not UTF-8 in the query": "?name=caf%E9"}.get(what, "")
            try:
                upload_fails(srv, body, q, status, code)
            except AssertionError as e:
                raise AssertionError("%s: %s" % (what, e))
        # a multipart body without a boundary, and bodies that are not multipart
        r = srv.request("POST", "/rest/golden-images", raw=disk,
                        headers={"Content-Type": "multipart/form-data"})
        assert r.status == 400 and r.json()["errorCode"] == "INVALID_MULTIPART", r
        wrong = Body("w.img", data=disk)
        r = srv.request("POST", "/rest/golden-images", raw=b"".join(wrong.chunks()),
                        headers={"Content-Type": "multipart/form-data; boundary=other"})
        assert r.status == 400 and r.json()["errorCode"] == "INVALID_MULTIPART", r
        r = srv.request("POST", "/rest/golden-images", raw=disk,
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status == 415 and r.json()["errorCode"] == "UNSUPPORTED_MEDIA_TYPE", r
        r = srv.request("POST", "/rest/golden-images", {"name": "x", "type": "GoldenImage"})
        assert r.status == 415, r
        r = srv.request("POST", "/rest/golden-images", {"name": "x", "imageCapture": True,
                                                        "osVolumeURI": "/rest/os-volumes/1"})
        assert r.status == 400 and r.json()["errorCode"] == "INVALID_BODY", r  # no buildPlanUri
        # a client that goes away in the middle of an upload (reset: libmicrohttpd
        # 0.9.75 notices a plain close in the middle of a body only at the
        # connection timeout)
        b = Body("gone.img", data=os.urandom(4 << 20))
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(("POST /rest/golden-images HTTP/1.1\r\nHost: x\r\nauth: %s\r\nContent-Type: %s\r\n"
                   "Content-Length: %d\r\n\r\n" % (srv.token, b.content_type(), b.length)).encode())
        s.sendall(b.head + b.data[:2 << 20])
        deadline = time.time() + 10
        while time.time() < deadline and not importing(srv):  # a raw image streams into its temp file
            time.sleep(0.01)
        assert importing(srv) and dir_files(srv, "uploads") == []
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        deadline = time.time() + 10
        while time.time() < deadline and importing(srv):
            time.sleep(0.01)
        tasks = srv.request("GET", "/rest/tasks?filter=name='Upload'&sort=created:desc").json()["members"]
        deadline = time.time() + 10
        while time.time() < deadline and tasks[0]["taskState"] == "Running":
            time.sleep(0.02)
            tasks = srv.request("GET", "/rest/tasks?filter=name='Upload'&sort=created:desc").json()["members"]
        assert tasks[0]["taskState"] == "Error", tasks[0]
        assert tasks[0]["taskErrors"][0]["errorCode"] == "UPLOAD_INCOMPLETE", tasks[0]
        # nothing was left behind
        assert golden_ids(srv) == before
        assert dir_files(srv, "golden") == golden_before
        assert dir_files(srv, "uploads") == []
        for t in srv.request("GET", "/rest/tasks").json()["members"]:
            assert t["taskState"] in ("Completed", "Error"), t
            if t["taskState"] == "Error":
                assert t["taskErrors"], t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- 5: roles and sessions, before the body is read --------------------------------------------
def early_answer(srv, token, query="", length=50 << 30):
    """Send only the headers of a huge upload; the answer must come anyway
    (and the server closes the connection after it)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        hdr = "POST /rest/golden-images%s HTTP/1.1\r\nHost: x\r\nX-API-Version: 2020\r\n" % query
        if token:
            hdr += "auth: %s\r\n" % token
        hdr += "Content-Type: multipart/form-data; boundary=abc\r\nContent-Length: %d\r\n\r\n" % length
        s.sendall(hdr.encode())
        data = b""
        while True:
            more = s.recv(65536)
            if not more:
                break
            data += more
        head, body = data.split(b"\r\n\r\n", 1)
        return int(head.split(b" ")[1]), head.decode(), json.loads(body)
    finally:
        s.close()


def test_roles_before_body(srv):
    ro = readonly_user(srv)
    status, head, body = early_answer(srv, ro)
    assert status == 403 and body["errorCode"] == "INSUFFICIENT_PRIVILEGES", (head, body)
    assert "Connection: close" in head
    status, _, body = early_answer(srv, None)
    assert status == 401 and body["errorCode"] == "AUTHORIZATION_REQUIRED", body
    status, _, body = early_answer(srv, "not-a-token")
    assert status == 401, body
    # more than the disk holds: 507 before the body
    status, _, body = early_answer(srv, srv.token, length=1 << 60)
    assert status == 507 and body["errorCode"] == "INSUFFICIENT_STORAGE", body
    # the Deployment administrator may upload; Server administrator may not
    dep = readonly_user(srv, "deployer", "Deployment administrator")
    gi = upload(srv, Body("d.img", data=pattern(1)), "?name=by-deployer", token=dep)
    assert gi.status == 202, gi
    assert srv.wait_task(gi.json()["uri"])["taskState"] == "Completed"
    sa = readonly_user(srv, "server", "Server administrator")
    status, _, body = early_answer(srv, sa)
    assert status == 403, body
    # every role may read and download
    img = srv.request("GET", "/rest/golden-images", token=ro).json()["members"][0]
    c = srv.connection()
    c.request("GET", "/rest/golden-images/download/" + img["id"], headers={"auth": ro})
    r = c.getresponse()
    assert r.status == 200 and raw_of_zip(r.read())[1] == pattern(1)
    c.close()
    for method in ("PUT", "DELETE"):
        r = srv.request(method, img["uri"], {"name": "x"} if method == "PUT" else None, token=ro)
        assert r.status == 403, r
    r = srv.request("GET", "/rest/golden-images/download/" + img["id"], auth=False)
    assert r.status == 401, r


# -- 6: names, PUT -------------------------------------------------------------------------------
def test_names_and_put(srv):
    img = pattern(1)
    a = upload_ok(srv, Body("a.img", data=img), "?name=Alpha")
    b = upload_ok(srv, Body("b.img", data=img), "?name=Beta")
    # a name taken in the query: 409 before the body
    status, _, body = early_answer(srv, srv.token, "?name=Alpha", length=1 << 20)
    assert status == 409 and body["errorCode"] == "NAME_CONFLICT", body
    upload_fails(srv, Body("x.img", data=img), "?name=Alpha", 409, "NAME_CONFLICT")
    upload_fails(srv, Body("x.img", data=img, fields=[("name", "Beta")]), "", 409, "NAME_CONFLICT")
    upload_fails(srv, Body("Alpha.img", data=img), "", 409, "NAME_CONFLICT")  # from the file name
    # rename with If-Match
    r = srv.request("PUT", a["uri"], {"name": "Alpha 2", "description": "renamed"},
                    headers={"If-Match": a["eTag"]})
    assert r.status == 200, r
    a2 = r.json()
    assert a2["name"] == "Alpha 2" and a2["description"] == "renamed" and a2["eTag"] != a["eTag"]
    assert r.headers["etag"] == a2["eTag"]
    r = srv.request("PUT", a["uri"], {"name": "Alpha 3"}, headers={"If-Match": a["eTag"]})
    assert r.status == 412 and r.json()["errorCode"] == "ETAG_MISMATCH", r
    # the whole resource sent back (what the Java and Python SDKs do) with a new name
    full = dict(a2, name="Alpha 3")
    r = srv.request("PUT", a["uri"], full, headers={"If-Match": "*"})
    assert r.status == 200 and r.json()["name"] == "Alpha 3", r
    r = srv.request("PUT", a["uri"], {"name": "Beta"})
    assert r.status == 409 and r.json()["errorCode"] == "NAME_CONFLICT", r
    for field, value in (("size", 1), ("checkSum", "00"), ("readOnly", True), ("format", "raw2")):
        r = srv.request("PUT", a["uri"], {"name": "Alpha 3", field: value})
        assert r.status == 400 and r.json()["errorCode"] == "GOLDEN_IMAGE_FIELD_READ_ONLY", (field, r)
    r = srv.request("PUT", a["uri"], {"name": "Alpha 3", "size": str(a["size"]), "readOnly": "false"})
    assert r.status == 200, r
    for body, code in (({"name": "bad/name"}, "INVALID_NAME"), ({"colour": "red"}, "UNKNOWN_FIELD"),
                       ({"id": "other"}, "ID_MISMATCH"), ([1], "INVALID_BODY"),
                       ({"description": 5}, "INVALID_FIELD"), ({"type": "PlanScript"}, "INVALID_TYPE")):
        r = srv.request("PUT", a["uri"], body)
        assert r.status == 400 and r.json()["errorCode"] == code, (body, r)
    r = srv.request("PUT", "/rest/golden-images/nope", {"name": "x"})
    assert r.status == 404, r
    # names with , and : download under a file name with dots
    r = srv.request("PUT", b["uri"], {"name": 'Beta, v2: "final"'})
    assert r.status == 400  # '"' is not allowed in names
    r = srv.request("PUT", b["uri"], {"name": "Beta, v2: final"})
    assert r.status == 200, r
    status, headers, _ = download(srv, b)
    assert headers["content-disposition"] == 'attachment; filename="Beta. v2. final.zip"', headers
    r = srv.request("GET", "/rest/golden-images/download/nope")
    assert r.status == 404, r
    r = srv.request("GET", "/rest/golden-images/archive/nope")
    assert r.status == 404, r


# -- 7: delete -------------------------------------------------------------------------------------
def test_delete(srv):
    gi = upload_ok(srv, Body("d.img", data=pattern(1)), "?name=Doomed")
    golden = dir_files(srv, "golden")
    assert any(gi["id"] in f for f in golden), golden
    bp = srv.request("POST", "/rest/build-plans", {"name": "BP", "oeBuildPlanType": "deploy"}).json()
    dp = srv.request("POST", "/rest/deployment-plans", {"name": "Uses it", "oeBuildPlanURI": bp["uri"],
                                                         "goldenImageURI": gi["uri"]})
    assert dp.status == 201, dp
    dp = dp.json()
    assert dp["goldenImageURI"] == gi["uri"]
    g = srv.request("GET", gi["uri"]).json()
    assert g["dependentArtifacts"] == [{"name": "Uses it", "uri": dp["uri"]}], g
    r = srv.request("DELETE", gi["uri"])
    assert r.status == 409 and r.json()["errorCode"] == "RESOURCE_IN_USE", r
    assert "Uses it" in r.json()["message"]
    # the plan can name the image by id or name too; renaming the plan shows up
    r = srv.request("PUT", dp["uri"], dict(dp, name="Uses it 2", goldenImageURI="Doomed"))
    assert r.status == 200 and r.json()["goldenImageURI"] == gi["uri"], r
    assert srv.request("GET", gi["uri"]).json()["dependentArtifacts"][0]["name"] == "Uses it 2"
    assert srv.request("DELETE", dp["uri"]).status == 204
    assert srv.request("GET", gi["uri"]).json()["dependentArtifacts"] == []
    r = srv.request("DELETE", gi["uri"], headers={"If-Match": "1/1"})
    assert r.status == 412, r
    r = srv.request("DELETE", gi["uri"])
    assert r.status == 202, r
    t = r.json()
    assert r.headers["location"] == t["uri"]
    assert t["name"] == "Delete" and t["associatedResource"]["resourceUri"] is None, t
    t = srv.wait_task(t["uri"])
    assert t["taskState"] == "Completed", t
    assert srv.request("GET", gi["uri"]).status == 404
    assert srv.request("GET", "/rest/golden-images/download/" + gi["id"]).status == 404
    assert not any(gi["id"] in f for f in dir_files(srv, "golden")), dir_files(srv, "golden")
    assert srv.request("DELETE", gi["uri"]).status == 404
    r = srv.request("POST", "/rest/deployment-plans", {"name": "Late", "oeBuildPlanURI": bp["uri"],
                                                        "goldenImageURI": gi["uri"]})
    assert r.status == 400 and r.json()["errorCode"] == "GOLDEN_IMAGE_NOT_FOUND", r


# -- 8: progress -------------------------------------------------------------------------------------
def test_upload_progress(srv):
    data = pattern(32)
    b = Body("slow.img", data=data)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    try:
        s.sendall(("POST /rest/golden-images?name=Slow HTTP/1.1\r\nHost: x\r\nauth: %s\r\n"
                   "Content-Type: %s\r\nContent-Length: %d\r\n\r\n"
                   % (srv.token, b.content_type(), b.length)).encode())
        s.sendall(b.head + data[:len(data) // 2])
        # the task is visible while the body is still arriving, with receive progress
        task, deadline = None, time.time() + 20
        while time.time() < deadline:
            ms = srv.request("GET", "/rest/tasks?filter=name='Upload'").json()["members"]
            if ms and ms[0]["percentComplete"] >= 20:
                task = ms[0]
                break
            time.sleep(0.02)
        assert task, "no Upload task with percentComplete >= 20 while receiving"
        assert task["taskState"] == "Running" and task["percentComplete"] < 50, task
        s.sendall(data[len(data) // 2:] + b.tail)
        resp = s.recv(65536).decode()
        assert resp.startswith("HTTP/1.1 202"), resp
    finally:
        s.close()
    t = srv.wait_task(task["uri"])
    assert t["taskState"] == "Completed" and t["percentComplete"] == 100, t
    texts = [u["statusUpdate"] for u in t["progressUpdates"]]
    assert any(x.startswith("Receiving") for x in texts) and any("Imported" in x for x in texts), texts
    assert t["associatedResource"]["resourceName"] == "Slow"


# -- 9: quota ------------------------------------------------------------------------------------------
def test_storage_quota():
    with harness.Server(extra_args=["--storage-quota", str(3 << 20)]) as srv:
        srv.login()
        upload_ok(srv, Body("a.img", data=os.urandom(2 << 20)), "?name=fits")
        err = upload_fails(srv, Body("b.img", data=os.urandom(2 << 20)), "?name=too%20much", 413,
                           "QUOTA_EXCEEDED")
        assert "quota" in err["message"]
        # announced and refused before the body
        status, _, body = early_answer(srv, srv.token, length=10 << 20)
        assert status == 413 and body["errorCode"] == "QUOTA_EXCEEDED", body
        # a qcow2 that expands past the quota is refused after its import
        tmp = tempfile.mkdtemp(prefix="streamer-gi-")
        try:
            rawp, q = os.path.join(tmp, "big.raw"), os.path.join(tmp, "big.qcow2")
            with open(rawp, "wb") as f:
                f.write(bytes(range(256)) * 8192)  # compresses to little, takes 2 MiB
            qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", rawp, q)
            upload_fails(srv, Body("big.qcow2", path=q), "", None, "QUOTA_EXCEEDED")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        assert [m["name"] for m in srv.request("GET", "/rest/golden-images").json()["members"]] == ["fits"]
        assert dir_files(srv, "uploads") == []
    r = subprocess.run([harness.STREAMERD, "--storage-quota", "-1"], capture_output=True, text=True)
    assert r.returncode == 2 and "storage-quota" in r.stderr, r


# -- 10: the CLI -------------------------------------------------------------------------------------
def test_cli_golden_image(srv):
    env = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token}

    def run(*args):
        return srv.cli(*args, env=env, input="")

    img = pattern(2)
    path = os.path.join(srv.tmp, "cli disk.img")
    with open(path, "wb") as f:
        f.write(img)
    r = run("golden-image", "upload", path, "--name", "CLI image", "--description", "from the cli")
    assert r.returncode == 0, r.stderr
    assert 'Uploaded golden image "CLI image"' in r.stdout and hashlib.sha256(img).hexdigest() in r.stdout, r.stdout
    assert "upload:" not in r.stderr and "\r" not in r.stderr, r.stderr  # no bars without a terminal
    r = run("golden-image", "list")
    assert r.returncode == 0 and "CLI image" in r.stdout and "raw" in r.stdout, r.stdout
    r = run("--json", "golden-image", "show", "CLI image")
    gi = json.loads(r.stdout)
    assert gi["description"] == "from the cli" and gi["size"] == len(img), gi
    r = run("golden-image", "show", gi["id"])
    assert r.returncode == 0 and "checkSum:" in r.stdout and gi["checkSum"] in r.stdout, r.stdout
    out = os.path.join(srv.tmp, "out.zip")
    r = run("golden-image", "download", "CLI image", out)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f:
        assert raw_of_zip(f.read())[1] == img
    assert not os.path.exists(out + ".part")
    r = run("golden-image", "update", "CLI image", "--name", "CLI image 2")
    assert r.returncode == 0 and "CLI image 2" in r.stdout, r.stderr
    # --no-wait, --json, default name from the file name
    r = run("--json", "golden-image", "upload", path, "--no-wait")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    assert srv.wait_task(t["uri"])["taskState"] == "Completed"
    assert srv.request("GET", "/rest/golden-images?filter=name%3D%27cli%20disk%27").json()["count"] == 1
    # errors: server refusals exit 1, local problems exit 2
    r = run("golden-image", "upload", path, "--name", "CLI image 2")
    assert r.returncode == 1 and "already exists" in r.stderr, r.stderr
    bad = os.path.join(srv.tmp, "notes.txt")
    with open(bad, "w") as f:
        f.write("hello")
    r = run("golden-image", "upload", bad)
    assert r.returncode == 1 and ".qcow2" in r.stderr, r.stderr
    r = run("golden-image", "upload", os.path.join(srv.tmp, "missing.img"))
    assert r.returncode == 2, r.stderr
    r = run("golden-image", "download", "no such image", out)
    assert r.returncode == 1, r.stderr
    r = run("golden-image", "download", "CLI image 2", os.path.join(srv.tmp, "no", "dir.zip"))
    assert r.returncode == 2, r.stderr
    r = run("golden-image", "delete", "CLI image 2")
    assert r.returncode == 0 and "Deleted" in r.stdout, r.stderr
    r = run("golden-image", "delete", "cli disk")
    assert r.returncode == 0, r.stderr
    r = run("golden-image", "list")
    assert "CLI image" not in r.stdout and "cli disk" not in r.stdout, r.stdout
    assert dir_files(srv, "uploads") == []


def test_cli_progress_bars_on_a_terminal(srv):
    """Upload and download draw progress bars on a terminal (stderr), then the
    import task's bar; without a terminal nothing is drawn (test above)."""
    import test_cli
    path = os.path.join(srv.tmp, "tty.img")
    with open(path, "wb") as f:
        f.write(os.urandom(8 << 20))
    env = {"STREAMER_SERVER": srv.url, "STREAMER_TOKEN": srv.token}
    err = test_cli.run_with_tty_stderr([harness.STREAMER, "golden-image", "upload", path], env)
    assert "upload: 8.0 MiB of 8.0 MiB" in err and "100%" in err, err
    assert "Completed: Imported golden image" in err, err
    out = os.path.join(srv.tmp, "tty.zip")
    err = test_cli.run_with_tty_stderr([harness.STREAMER, "golden-image", "download", "tty", out], env)
    assert "download: 8.0 MiB of 8.0 MiB" in err, err
    with open(out, "rb") as f, open(path, "rb") as g:
        assert raw_of_zip(f.read())[1] == g.read()


def test_restart_cleans_leftovers():
    """What a stop in the middle of an upload or an import leaves (an upload
    file, an import's temp file, a golden volume without its document) is
    removed at the next start; real golden images survive restarts."""
    with harness.Server() as srv:
        srv.login()
        img = pattern(1)
        gi = upload_ok(srv, Body("keep.img", data=img), "?name=Keeper")
        srv.stop()
        orphan = "0b9c1c1e-3f0e-4d1e-9a57-2d5c2c2f0a11"
        golden = os.path.join(srv.data_dir, "volumes", "golden")
        leftovers = [os.path.join(golden, orphan + ".raw"), os.path.join(golden, "." + orphan + ".tmp"),
                     os.path.join(srv.data_dir, "volumes", "uploads", orphan + ".part")]
        for p in leftovers:
            with open(p, "wb") as f:
                f.write(b"\0" * 4096)
        srv.start()
        srv.login()
        for p in leftovers:
            assert not os.path.exists(p), p
        assert golden_ids(srv) == [gi["id"]]
        status, _, data = download(srv, gi)
        assert status == 200 and raw_of_zip(data)[1] == img
        assert "no golden image uses it" in srv.read_log()


# -- 12: usable before the SHA-256; a pending checksum survives a stop -----------------------------
def test_checksum_pending_then_resumed():
    """With the SHA-256 held back (STREAMER_IMAGE_HASH=hold, a test setting), an
    upload becomes usable with checkSumState Pending while its task runs: it
    downloads, renames with the whole document sent back, clones into an OS
    volume. A stop interrupts the SHA-256; the next start computes it in a
    "Compute checksum" task. Zips with a data descriptor, stored or zip64
    members stream too."""
    srv = harness.Server(env={"STREAMER_IMAGE_HASH": "hold"})
    srv.start()
    try:
        srv.login()
        img = pattern(8)
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("held.raw", img)
        r = upload(srv, Body("held.zip", data=zbuf.getvalue()), "?name=Held")
        assert r.status == 202, r
        task_uri = r.json()["uri"]
        gi_uri = r.json()["associatedResource"]["resourceUri"]
        deadline = time.time() + 30
        while time.time() < deadline and srv.request("GET", gi_uri).status != 200:
            time.sleep(0.02)
        gi = srv.request("GET", gi_uri).json()
        assert gi["checkSumState"] == "Pending" and gi["checkSum"] == "", gi
        assert gi["status"] == "OK" and gi["state"] == "OK" and gi["size"] == len(img), gi
        t = srv.request("GET", task_uri).json()
        assert t["taskState"] == "Running" and 90 <= t["percentComplete"] < 100, t
        assert any("usable" in u["statusUpdate"] for u in t["progressUpdates"]), t
        status, _, data = download(srv, gi)
        assert status == 200 and raw_of_zip(data) == ("held.raw", img)
        gi["name"] = "Held again"
        r = srv.request("PUT", gi_uri, gi)
        assert r.status == 200 and r.json()["name"] == "Held again", r
        r = srv.request("POST", "/rest/os-volumes", {"name": "held-clone", "goldenImageUri": gi_uri,
                                                     "initiatorNames": ["*"], "allowAnyInitiator": True})
        if r.status != 404:  # OS volumes are served by this build
            assert r.status == 202, r
            t = srv.wait_task(r.headers["location"], timeout=60)
            assert t["taskState"] == "Completed", t
            vol = t["associatedResource"]["resourceUri"]
            t = srv.wait_task(srv.request("DELETE", vol).headers["location"], timeout=60)
            assert t["taskState"] == "Completed", t
        srv.stop()
        assert "SHA-256 not computed" in srv.read_log()
        srv.env = None
        srv.start()
        srv.login()
        want = hashlib.sha256(img).hexdigest()
        deadline = time.time() + 60
        while time.time() < deadline and srv.request("GET", gi_uri).json()["checkSumState"] != "OK":
            time.sleep(0.05)
        gi = srv.request("GET", gi_uri).json()
        assert gi["checkSum"] == want and gi["checkSumState"] == "OK", gi
        tasks = srv.request("GET", "/rest/tasks").json()["members"]
        up = [t for t in tasks if t["uri"] == task_uri][0]
        assert up["taskState"] == "Error", up  # interrupted by the stop
        cs = [t for t in tasks if t["name"] == "Compute checksum"]
        assert len(cs) == 1 and cs[0]["associatedResource"]["resourceUri"] == gi_uri, cs
        assert srv.wait_task(cs[0]["uri"])["taskState"] == "Completed"
        log = srv.request("GET", "/rest/golden-images/archive/" + gi["id"]).body
        assert "sha256: " + want in log, log
        # other zip shapes stream as well: data descriptor (an unseekable writer), stored, zip64 sizes
        class Unseekable(io.RawIOBase):
            def __init__(self):
                self.buf = bytearray()

            def writable(self):
                return True

            def write(self, b):
                self.buf += b
                return len(b)
        u = Unseekable()
        with zipfile.ZipFile(u, "w", zipfile.ZIP_DEFLATED) as z:
            with z.open("dd.raw", "w") as m:
                m.write(img)
        stored = zip_bytes([("stored.raw", img)])
        z64 = io.BytesIO()
        with zipfile.ZipFile(z64, "w", zipfile.ZIP_DEFLATED) as z:
            with z.open("z64.raw", "w", force_zip64=True) as m:
                m.write(img)
        for name, data in (("dd.zip", bytes(u.buf)), ("stored.zip", stored), ("z64.zip", z64.getvalue())):
            g = upload_ok(srv, Body(name, data=data))
            assert g["checkSum"] == want and g["checkSumState"] == "OK", (name, g)
        assert dir_files(srv, "uploads") == [] and importing(srv) == []
    finally:
        srv.stop()
        srv.cleanup()

