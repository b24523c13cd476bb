"""tree_readonly.py P KEY_ID - the checks of cases/tree-readonly.sh.

What a read-only mount (-o ro) refuses in project P, and with which errno."""
import errno, os, sys
p, kid = sys.argv[1], sys.argv[2]
def expect(want, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        if e.errno != want:
            sys.exit("%s%r: expected %s, got %s" % (fn.__name__, args, errno.errorcode[want], errno.errorcode.get(e.errno)))
        return
    sys.exit("%s%r: succeeded, expected %s" % (fn.__name__, args, errno.errorcode[want]))
EPERM, ENOENT, EISDIR = errno.EPERM, errno.ENOENT, errno.EISDIR
expect(EPERM, os.mkdir, p + "/newdir")
expect(EPERM, os.mkdir, p + "/keys/newdir")
expect(EPERM, os.rmdir, p + "/keys/" + kid)
expect(EPERM, os.rmdir, p + "/aliases")
expect(EPERM, os.unlink, p + "/create-key")
expect(EPERM, os.unlink, p + "/aliases/app")
expect(EPERM, os.unlink, p + "/keys/" + kid + "/create-datakey")
expect(EPERM, os.rename, p + "/create-key", p + "/other")
expect(EPERM, os.rename, p + "/keys/" + kid, p + "/keys/x")
expect(EPERM, os.rename, p + "/aliases/app", p + "/aliases/app2")
expect(EPERM, os.symlink, "../keys/" + kid, p + "/aliases/new")
expect(EPERM, os.link, p + "/create-key", p + "/create-key-2")
expect(EPERM, os.chmod, p + "/create-key", 0o600)
expect(EPERM, os.chmod, p, 0o700)
expect(EPERM, os.chown, p + "/create-key", 1, 1)
expect(ENOENT, os.open, p + "/unknown-action", os.O_WRONLY | os.O_CREAT, 0o644)
expect(ENOENT, os.open, p + "/keys/" + kid + "/unknown", os.O_RDWR | os.O_CREAT, 0o644)
expect(EISDIR, os.open, p + "/keys", os.O_WRONLY)
expect(EISDIR, os.open, p, os.O_RDWR)
# The tree is unchanged afterwards.
assert sorted(os.listdir(p + "/keys")) == [kid], os.listdir(p + "/keys")
assert os.listdir(p + "/aliases") == ["app"], os.listdir(p + "/aliases")
