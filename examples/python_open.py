#!/usr/bin/python3
"""A program that only knows file I/O: one O_RDWR handle per request, as design.md describes.

Environment: KMS_MOUNT (default /kms), KMS_PROJECT (default demo), and either a token already bound
(setfattr) or KMS_TOKEN, which this program binds with os.setxattr.
"""
import json
import os
import sys
import uuid

MNT = os.environ.get("KMS_MOUNT", "/kms")
PROJECT = os.environ.get("KMS_PROJECT", "demo")
DIR = os.path.join(MNT, PROJECT)


def call(action, request, key_dir=None):
    """One same-handle transaction: safe under any concurrency, no mailbox involved."""
    path = os.path.join(DIR, "keys", key_dir, action) if key_dir else os.path.join(DIR, action)
    fd = os.open(path, os.O_RDWR)
    try:
        os.write(fd, json.dumps(request).encode())
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)  # reports nothing for a read-write handle: the JSON below says how it went
    response = json.loads(b"".join(chunks))
    if "error" in response:
        raise RuntimeError(f"{action}: {response['error']['error_code']} "
                           f"{response['error']['error_msg']}")
    return response


def main():
    token = os.environ.get("KMS_TOKEN")
    if token:
        os.setxattr(DIR, "user.kms.token", token.encode())
    alias = "py-" + uuid.uuid4().hex[:12]
    key_id = call("create-key", {"key_alias": alias})["key_info"]["key_id"]
    # Inside the key's folder the key comes from the path, as a container would see it.
    dk = call("create-datakey", {"encryption_context": {"app": "billing"}}, key_dir=key_id)
    back = call("decrypt-datakey", {"cipher_text": dk["cipher_text"], "datakey_cipher_length": "64",
                                    "encryption_context": {"app": "billing"}}, key_dir=key_id)
    assert back["data_key"] == dk["plain_text"], "DEK round trip failed"
    try:
        call("decrypt-datakey", {"key_id": key_id, "cipher_text": dk["cipher_text"],
                                 "datakey_cipher_length": "64"})
        raise AssertionError("decrypt without the encryption context must fail")
    except RuntimeError as e:
        assert "KMS.2203" in str(e), e
    print(f"key {key_id} ({alias}): data key wrapped and unwrapped through {DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
