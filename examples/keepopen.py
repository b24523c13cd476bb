#!/usr/bin/python3
"""Many requests on kept-open handles: one handle per action file per thread, opened once.

Each thread keeps a handle on its key folder's create-datakey and one on decrypt-datakey, and runs
ROUNDS data-key round trips on them: write the request, read the answer, again. In the middle of
its rounds every thread sends a deliberate bad request (malformed JSON) on its create-datakey
handle, handles the error that comes back in the answer, and goes on on the same handle.

Environment: KMS_MOUNT (default /kms), KMS_PROJECT (default demo), and either a token already bound
(setfattr) or KMS_TOKEN, which this program binds with os.setxattr. Options: THREADS (4),
ROUNDS (100).
"""
import json
import os
import sys
import threading
import uuid

MNT = os.environ.get("KMS_MOUNT", "/kms")
PROJECT = os.environ.get("KMS_PROJECT", "demo")
DIR = os.path.join(MNT, PROJECT)
THREADS = int(os.environ.get("THREADS", "4"))
ROUNDS = int(os.environ.get("ROUNDS", "100"))


class KmsError(Exception):
    """An API error answered to one request; the handle stays usable."""

    def __init__(self, code, msg, write_errno=0):
        super().__init__(f"{code} {msg}")
        self.code, self.write_errno = code, write_errno


class KmsHandle:
    """One kept-open handle on one action file. Not for sharing between threads: a handle holds
    one request and one answer at a time, so give each thread its own (or lock around call)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def call(self, request):
        """One request: write it, read its answer. Returns the answer as a dict, or raises
        KmsError with the API's error code. A further write on the handle starts the next
        request, so this can be called again and again."""
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        write_errno = 0
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            # A refused write (EFBIG: over 64 KiB). The request is answered all the same: read
            # the answer (its error) before the next request.
            write_errno = e.errno
        # The answer starts at the first read after the request, whatever the file offset. It is
        # one line: stop at its '\n' (a read that returned less than asked is not an error).
        answer = bytearray()
        while not answer.endswith(b"\n"):
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            answer += chunk
        doc = json.loads(answer)
        if "error" in doc:
            raise KmsError(doc["error"]["error_code"], doc["error"]["error_msg"], write_errno)
        return doc

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass  # each request's error was in its answer already


def worker(key_id, t, results):
    ctx = {"worker": str(t)}
    create = KmsHandle(os.path.join(DIR, "keys", key_id, "create-datakey"))
    decrypt = KmsHandle(os.path.join(DIR, "keys", key_id, "decrypt-datakey"))
    good = handled = 0
    try:
        for i in range(ROUNDS):
            if i == ROUNDS // 2:
                try:
                    create.call(b'{"datakey_length":')  # deliberately malformed
                    raise AssertionError("a malformed request succeeded")
                except KmsError as e:
                    assert e.code == "KMS.0202", e  # bad JSON; the handle goes on below
                    handled += 1
            dk = create.call({"datakey_length": "256", "encryption_context": ctx})
            back = decrypt.call({"cipher_text": dk["cipher_text"], "datakey_cipher_length": "32",
                                 "encryption_context": ctx})
            assert back["data_key"] == dk["plain_text"], "DEK round trip failed"
            good += 2
        results[t] = (good, handled)
    finally:
        create.close()
        decrypt.close()


def main():
    token = os.environ.get("KMS_TOKEN")
    if token:
        os.setxattr(DIR, "user.kms.token", token.encode())
    alias = "keepopen-py-" + uuid.uuid4().hex[:12]
    h = KmsHandle(os.path.join(DIR, "create-key"))
    try:
        key_id = h.call({"key_alias": alias})["key_info"]["key_id"]
        try:
            h.call({"key_alias": alias})  # the same alias again, on the same handle
            raise AssertionError("a duplicate alias was accepted")
        except KmsError as e:
            assert e.code == "KMS.1104", e
    finally:
        h.close()
    results = [None] * THREADS
    threads = [threading.Thread(target=worker, args=(key_id, t, results)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if None in results:
        print("a worker failed", file=sys.stderr)
        return 1
    good = sum(r[0] for r in results)
    handled = sum(r[1] for r in results)
    print(f"key {key_id} ({alias}): {good} requests on {2 * THREADS} kept-open handles "
          f"({THREADS} threads), {handled} bad requests answered with their error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
