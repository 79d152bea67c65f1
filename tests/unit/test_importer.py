"""corral.templates.importer: hostile archives are refused without touching
anything outside dest; good archives, directories and OCI images come out exact.

Runs as root (ownership, setuid bits, security.capability, device nodes) and
builds every archive and image by hand under tmp_path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import stat
import struct
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConflictError, ValidationError
from corral.templates import importer
from corral.templates.importer import detect, import_into

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod)")

MTIME = 1_600_000_000
# struct vfs_cap_data v2 with the effective bit and CAP_NET_RAW (13) permitted
CAP = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)

Member = tuple[tarfile.TarInfo, bytes | None]


# --------------------------------------------------------------------------- builders

def _info(name: str, kind: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
          mtime: int = MTIME, linkname: str = "", xattrs: dict[str, bytes] | None = None,
          major: int = 0, minor: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = kind, mode, uid, gid, mtime, linkname
    ti.devmajor, ti.devminor = major, minor
    ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                      for k, v in (xattrs or {}).items()}
    return ti


def f(name: str, data: bytes = b"", **kw: Any) -> Member:
    ti = _info(name, tarfile.REGTYPE, **kw)
    ti.size = len(data)
    return ti, data


def d(name: str, **kw: Any) -> Member:
    return _info(name, tarfile.DIRTYPE, **{"mode": 0o755, **kw}), None


def sym(name: str, target: str) -> Member:
    return _info(name, tarfile.SYMTYPE, linkname=target, mode=0o777), None


def hl(name: str, target: str) -> Member:
    return _info(name, tarfile.LNKTYPE, linkname=target), None


def dev(name: str, kind: bytes, major: int = 0, minor: int = 0) -> Member:
    return _info(name, kind, major=major, minor=minor, mode=0o666), None


def tar_bytes(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def compress(raw: bytes, how: str) -> bytes:
    if how == "gz":
        return gzip.compress(raw)
    if how == "xz":
        return lzma.compress(raw)
    if how == "zst":
        return subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE,
                              check=True).stdout
    return raw


def write_tar(path: Path, members: list[Member], how: str = "") -> Path:
    path.write_bytes(compress(tar_bytes(members), how))
    return path


def snapshot(root: Path, skip: set[str]) -> dict[str, tuple[Any, ...]]:
    """Everything under root except the ``skip`` top-level names, with content."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [n for n in dirnames if n not in skip]
            filenames = [n for n in filenames if n not in skip]
        for name in [*dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            body = (os.readlink(p) if stat.S_ISLNK(st.st_mode)
                    else Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else None)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_mtime_ns, body)
    return out


def listing(root: Path) -> dict[str, Any]:
    """rel path -> "dir" | file content | ("->", symlink target)."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("->", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = p.read_bytes()
    return out


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """tmp_path with an empty dest and a sentinel directory next to it."""
    (tmp_path / "dest").mkdir()
    out = tmp_path / "outside"
    out.mkdir(mode=0o750)
    (out / "keep").write_text("original\n")
    (out / "sub").mkdir()
    return tmp_path


def refused(box: Path, source: str, match: str, **kw: Any) -> None:
    """Importing ``source`` raises ValidationError and leaves all but dest alone.

    Like the real caller, dest is a fresh empty directory before and is
    thrown away after a failure.
    """
    dest = box / "dest"
    shutil.rmtree(dest)
    dest.mkdir()
    before = snapshot(box, {"dest"})
    with pytest.raises(ValidationError, match=match):
        import_into(source, str(dest), **kw)
    assert snapshot(box, {"dest"}) == before
    assert not (box / "dest.oci-tmp").exists()
    shutil.rmtree(dest)
    dest.mkdir()


# --------------------------------------------------------------------------- detect

def test_detect_sniffs_content_not_names(tmp_path: Path) -> None:
    members = [f("x", b"1")]
    assert detect(str(tmp_path)) == "dir"
    for how in ("", "gz", "xz", "zst"):
        assert detect(str(write_tar(tmp_path / f"rootfs-{how}.img", members, how))) == "tar"
    fake = tmp_path / "rootfs.tar.gz"
    fake.write_text("not an archive at all\n" * 50)
    with pytest.raises(ValidationError, match="is not a tar"):
        detect(str(fake))
    with pytest.raises(ValidationError, match="does not exist"):
        detect(str(tmp_path / "missing.tar"))
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    assert detect(f"oci:{layout}") == "oci"
    assert detect(f"oci:{layout}:v1") == "oci"
    assert detect(f"oci-archive:{tmp_path / 'rootfs-.img'}:latest") == "oci-archive"
    with pytest.raises(ValidationError, match="not an OCI image layout"):
        detect(f"oci:{tmp_path}")
    with pytest.raises(ValidationError, match="does not exist"):
        detect(f"oci-archive:{tmp_path / 'nope.tar'}")


# --------------------------------------------------------------------------- tar round trip

def rootfs_members() -> list[Member]:
    return [
        d("./", mode=0o755, mtime=MTIME + 1),
        d("./usr"), d("./usr/lib"),
        # a read-only directory listed before its content: its mode and mtime
        # must be applied after the content is written
        d("./usr/bin", mode=0o555, mtime=MTIME + 2),
        f("./usr/bin/su", b"#!su\n", mode=0o4755),
        f("./usr/bin/ping", b"#!ping\n", mode=0o755, xattrs={"security.capability": CAP}),
        f("./usr/lib/os-release", b'ID=testos\nVERSION_ID="1.2"\nPRETTY_NAME="Test OS 1.2"\n'),
        d("./etc"),
        sym("./etc/os-release", "../usr/lib/os-release"),
        sym("./bin", "usr/bin"),
        sym("./abs", "/usr/bin/su"),
        d("./home/u", mode=0o700, uid=1000, gid=1001, mtime=MTIME - 100),
        f("./home/u/file", b"hello\n", mode=0o640, uid=1000, gid=1001, mtime=MTIME - 5,
          xattrs={"user.comment": b"kept"}),
        hl("./home/u/link", "./home/u/file"),
        d("./tmp", mode=0o1777),
    ]


@pytest.mark.parametrize("how", ["", "gz", "xz", "zst"])
def test_tar_round_trip_preserves_everything(box: Path, how: str) -> None:
    src = write_tar(box / f"rootfs.tar.{how}", rootfs_members(), how)
    calls: list[tuple[str, int, int | None]] = []
    meta = import_into(str(src), str(box / "dest"), progress=lambda *a: calls.append(a))
    root = box / "dest"

    su = os.lstat(root / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_uid == 0
    assert os.getxattr(root / "usr/bin/ping", "security.capability") == CAP
    home = os.lstat(root / "home/u/file")
    assert (stat.S_IMODE(home.st_mode), home.st_uid, home.st_gid) == (0o640, 1000, 1001)
    assert home.st_mtime_ns == (MTIME - 5) * 10**9
    assert os.getxattr(root / "home/u/file", "user.comment") == b"kept"
    assert os.lstat(root / "home/u/link").st_ino == home.st_ino and home.st_nlink == 2
    assert os.readlink(root / "bin") == "usr/bin"
    assert os.readlink(root / "abs") == "/usr/bin/su"
    udir = os.lstat(root / "home/u")
    assert (stat.S_IMODE(udir.st_mode), udir.st_uid, udir.st_mtime_ns) == \
        (0o700, 1000, (MTIME - 100) * 10**9)
    ubin = os.lstat(root / "usr/bin")
    assert stat.S_IMODE(ubin.st_mode) == 0o555 and ubin.st_mtime_ns == (MTIME + 2) * 10**9
    assert stat.S_IMODE(os.lstat(root / "tmp").st_mode) == 0o1777
    assert os.lstat(root).st_mtime_ns == (MTIME + 1) * 10**9

    assert meta["format"] == "tar" and meta["layers"] == 1 and meta["source"] == str(src)
    assert meta["bytes"] == sum(len(data or b"") for _, data in rootfs_members())
    assert meta["files"] == len(rootfs_members()) - 1    # the root itself is not counted
    assert (meta["os_id"], meta["os_version"], meta["os_name"]) == ("testos", "1.2", "Test OS 1.2")
    assert calls and calls[0][0] == "extract" and calls[-1][1] == calls[-1][2] == src.stat().st_size


def test_devices_and_fifos_when_allowed(box: Path) -> None:
    src = write_tar(box / "dev.tar", [d("dev"), dev("dev/null", tarfile.CHRTYPE, 1, 3),
                                      dev("dev/loop0", tarfile.BLKTYPE, 7, 0),
                                      dev("run/fifo", tarfile.FIFOTYPE)])
    import_into(str(src), str(box / "dest"), allow_devices=True)
    null = os.lstat(box / "dest/dev/null")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.lstat(box / "dest/dev/loop0").st_mode)
    assert stat.S_ISFIFO(os.lstat(box / "dest/run/fifo").st_mode)
    assert stat.S_IMODE(null.st_mode) == 0o666


# --------------------------------------------------------------------------- hostile tars

HOSTILE: dict[str, tuple[Callable[[Path], list[Member]], str]] = {
    "absolute name": (lambda out: [f("/etc/evil", b"x")],
                      "'/etc/evil' is refused: path is absolute"),
    "dotdot": (lambda out: [f("../outside/keep", b"pwned")],
               "'../outside/keep' is refused: path leaves the tree"),
    "inner dotdot": (lambda out: [f("a/../../outside/keep", b"pwned")], "leaves the tree"),
    "dot dotdot": (lambda out: [f("./../outside/new", b"pwned")], "leaves the tree"),
    "through absolute symlink": (lambda out: [sym("lib", str(out)), f("lib/keep", b"pwned")],
                                 "'lib/keep' is refused: path goes through a symlink"),
    "through relative symlink": (lambda out: [sym("lib", "../outside"), f("lib/new", b"pwned")],
                                 "path goes through a symlink"),
    "dir through symlink": (lambda out: [sym("lib", str(out)), d("lib/sub", mode=0o777)],
                            "path goes through a symlink"),
    "deep through symlink": (lambda out: [d("a"), sym("a/b", str(out)), f("a/b/sub/x", b"1")],
                             "path goes through a symlink"),
    "hard link dotdot": (lambda out: [hl("h", "../outside/keep")],
                         "hard link target leaves the tree"),
    "hard link absolute": (lambda out: [hl("h", str(out / "keep"))],
                           "hard link target is absolute"),
    "hard link not earlier": (lambda out: [hl("h", "etc/passwd"), f("etc/passwd", b"x")],
                              "is not a regular file written earlier"),
    "hard link through symlink": (lambda out: [sym("lib", str(out)), hl("h", "lib/keep")],
                                  "is not a regular file written earlier"),
    "hard link to symlink": (lambda out: [sym("s", str(out / "keep")), hl("h", "s")],
                             "is not a regular file written earlier"),
    "hard link to directory": (lambda out: [d("dd"), hl("h", "dd")],
                               "is not a regular file written earlier"),
    "char device": (lambda out: [dev("null", tarfile.CHRTYPE, 1, 3)],
                    "'null' is refused: device nodes are not allowed"),
    "block device": (lambda out: [dev("sda", tarfile.BLKTYPE, 8, 0)],
                     "device nodes are not allowed"),
    "fifo": (lambda out: [dev("fifo", tarfile.FIFOTYPE)], "FIFOs are not allowed"),
    "whiteout name": (lambda out: [d("etc"), f("etc/.wh.passwd")],
                      "whiteout markers are only valid in image layers"),
    "opaque marker": (lambda out: [f(".wh..wh..opq")], "whiteout markers are only valid"),
    "long name": (lambda out: [f("d/" * 2100 + "x", b"1")], "longer than 4096 bytes"),
    "long symlink target": (lambda out: [sym("s", "x" * 4097)],
                            "symlink target is empty or longer"),
    "uid -1": (lambda out: [f("x", b"1", uid=2**32 - 1)], "owner id 4294967295 is out of range"),
    "unknown type": (lambda out: [(_info("vol", b"V"), None)], "member type b'V' is not supported"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_tar_is_refused(box: Path, case: str) -> None:
    build, match = HOSTILE[case]
    src = write_tar(box / "evil.tar", build(box / "outside"))
    refused(box, str(src), match)


def test_overlay_whiteout_device_refused_even_with_devices(box: Path) -> None:
    src = write_tar(box / "evil.tar", [dev("gone", tarfile.CHRTYPE, 0, 0)])
    refused(box, str(src), "overlayfs whiteout", allow_devices=True)


def test_size_limit(box: Path) -> None:
    src = write_tar(box / "big.tar.gz", [f("a", b"x" * 100), f("b", b"y" * 100)], "gz")
    refused(box, str(src), "'b' is refused: archive expands past the limit of 150 bytes",
            max_bytes=150)
    meta = import_into(str(src), str(box / "dest"), max_bytes=200)
    assert meta["bytes"] == 200


def test_member_count_limit(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "MAX_MEMBERS", 3)
    src = write_tar(box / "many.tar", [f(f"f{i}") for i in range(4)])
    refused(box, str(src), "more than 3 members")


def test_oversized_extended_header_is_refused(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tarfile reads a PAX header whole into memory: its size is capped."""
    monkeypatch.setattr(importer, "_HEADER_LIMIT", 1000)
    src = write_tar(box / "fat.tar", [f("x", b"1", xattrs={"user.big": b"v" * 2000})])
    refused(box, str(src), "extended header of .* bytes is larger than 1000")


def test_symlink_is_replaced_never_followed(box: Path) -> None:
    """A later member at a symlink's path replaces the link; it never writes through it."""
    out = box / "outside"
    src = write_tar(box / "swap.tar", [
        sym("evil", str(out / "keep")), f("evil", b"mine\n", mode=0o4755),
        sym("d", str(out)), d("d", mode=0o777), f("d/new", b"inside"),
    ])
    before = snapshot(box, {"dest"})
    import_into(str(src), str(box / "dest"))
    assert snapshot(box, {"dest"}) == before
    assert (box / "dest/evil").read_bytes() == b"mine\n"
    assert not (box / "dest/evil").is_symlink()
    assert (box / "dest/d").is_dir() and not (box / "dest/d").is_symlink()
    assert (box / "dest/d/new").read_bytes() == b"inside"


@pytest.mark.parametrize("how", ["gz", "xz", "zst"])
def test_truncated_compressed_archive_is_refused(box: Path, how: str) -> None:
    data = compress(tar_bytes([f(f"f{i}", os.urandom(2000)) for i in range(20)]), how)
    src = box / "cut.tar"
    src.write_bytes(data[: len(data) * 2 // 3])
    refused(box, str(src), "is corrupt|is not a valid archive|is not valid zstd data")


def test_garbled_header_is_refused(box: Path) -> None:
    raw = bytearray(tar_bytes([f("a", b"1" * 600), f("b", b"2")]))
    second = raw.index(b"b\0")           # header of the second member
    raw[second + 148:second + 156] = b"1234567\0"   # wrong checksum
    src = box / "bad.tar"
    src.write_bytes(bytes(raw))
    refused(box, str(src), "bad.tar' is corrupt: bad checksum")


# --------------------------------------------------------------------------- directories

def test_dir_import_copies_exactly(box: Path) -> None:
    src = box / "srcdir"
    (src / "usr/bin").mkdir(parents=True)
    (src / "usr/bin/su").write_bytes(b"su")
    os.chmod(src / "usr/bin/su", 0o4755)
    (src / "home/u").mkdir(parents=True)
    (src / "home/u/f").write_bytes(b"data")
    os.chown(src / "home/u/f", 1000, 1001)
    os.chown(src / "home/u", 1000, 1001)
    os.setxattr(src / "home/u/f", "user.note", b"x")
    os.setxattr(src / "usr/bin/su", "security.capability", CAP)
    os.link(src / "home/u/f", src / "home/u/g")
    os.symlink("/usr/bin/su", src / "abs")
    os.symlink(str(box / "outside"), src / "out")        # copied as a link, never followed
    os.chmod(src / "usr/bin", 0o555)
    os.utime(src / "home/u", ns=(MTIME * 10**9, MTIME * 10**9))
    os.utime(src / "home/u/f", ns=(5, 5))

    before = snapshot(box, {"dest"})
    meta = import_into(str(src), str(box / "dest"))
    assert snapshot(box, {"dest"}) == before
    got, want = snapshot(box / "dest", set()), snapshot(src, set())
    # directory mtimes of ancestors change when content is added on the source side only
    assert got.keys() == want.keys()
    for rel in want:
        assert got[rel] == want[rel], rel
    dest = box / "dest"
    assert os.lstat(dest / "home/u/g").st_ino == os.lstat(dest / "home/u/f").st_ino
    assert os.getxattr(dest / "home/u/f", "user.note") == b"x"
    assert os.getxattr(dest / "usr/bin/su", "security.capability") == CAP
    assert os.lstat(dest / "home/u/f").st_gid == 1001
    assert meta["format"] == "dir" and meta["bytes"] == 6 and meta["files"] == len(want)


def test_dir_import_refuses_devices_size_and_nesting(box: Path) -> None:
    src = box / "srcdir"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 10)
    os.mkfifo(src / "fifo")
    refused(box, str(src), "source entry 'fifo' is refused: FIFOs are not allowed")
    os.unlink(src / "fifo")
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    refused(box, str(src), "device nodes are not allowed")
    os.unlink(src / "null")
    refused(box, str(src), "source directory expands past the limit of 5 bytes", max_bytes=5)
    inner = src / "inner"
    inner.mkdir()
    with pytest.raises(ValidationError, match="inside the source"):
        import_into(str(src), str(inner))


def test_dest_must_be_an_empty_directory(box: Path) -> None:
    src = write_tar(box / "a.tar", [f("x", b"1")])
    (box / "dest/junk").write_text("")
    with pytest.raises(ValidationError, match="not empty"):
        import_into(str(src), str(box / "dest"))
    with pytest.raises(ValidationError, match="does not exist"):
        import_into(str(src), str(box / "nowhere"))


# --------------------------------------------------------------------------- OCI

class Layout:
    """A hand-made OCI image layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs/sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes, media: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (self.root / "blobs/sha256" / digest).write_bytes(data)
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    def layer(self, members: list[Member], how: str = "gz") -> dict[str, Any]:
        media = "application/vnd.oci.image.layer.v1.tar" + {"gz": "+gzip", "zst": "+zstd",
                                                            "": ""}[how]
        return self.blob(compress(tar_bytes(members), how), media)

    def image(self, layers: list[dict[str, Any]], arch: str = "") -> dict[str, Any]:
        config = {"architecture": arch or importer._host_arch(), "os": "linux",
                  "created": "2024-01-02T03:04:05Z",
                  "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/srv",
                             "User": "1000", "Labels": {"a": "b"}},
                  "rootfs": {"type": "layers", "diff_ids": []}}
        cdesc = self.blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cdesc, "layers": layers}
        return self.blob(json.dumps(manifest).encode(),
                         "application/vnd.oci.image.manifest.v1+json")

    def index(self, entries: list[tuple[dict[str, Any], str | None]]) -> None:
        manifests = []
        for desc, ref in entries:
            desc = dict(desc)
            if ref:
                desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
            manifests.append(desc)
        (self.root / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": manifests}))


L1 = [d("etc"), f("etc/os-release", b"ID=layered\nVERSION_ID=3\nPRETTY_NAME='Layered 3'\n"),
      d("a"), f("a/x", b"x"), f("a/y", b"y"), d("a/sub"), f("a/sub/z", b"z"),
      d("b"), f("b/f", b"f"), f("c", b"c"), f("d", b"d"), d("keep"), f("keep/k", b"k"),
      sym("lnk", "/etc")]
L2 = [f(".wh.c"),
      d("a"), f("a/new", b"new"), f("a/sub/w", b"w"), f("a/.wh..wh..opq"), f("a/later", b"later"),
      f("e", b"e"), f(".wh.e")]                 # a layer's whiteout never hides its own files
L3 = [f("b", b"now a file"), d("d"), f("d/inner", b"inner"), f(".wh.keep"),
      f(".wh.missing")]

EXPECTED_V1 = {"etc": "dir", "etc/os-release": L1[1][1], "a": "dir", "a/x": b"x", "a/y": b"y",
               "a/sub": "dir", "a/sub/z": b"z", "b": "dir", "b/f": b"f", "c": b"c", "d": b"d",
               "keep": "dir", "keep/k": b"k", "lnk": ("->", "/etc")}
EXPECTED_LATEST = {"etc": "dir", "etc/os-release": L1[1][1], "a": "dir", "a/new": b"new",
                   "a/later": b"later", "a/sub": "dir", "a/sub/w": b"w", "b": b"now a file",
                   "d": "dir", "d/inner": b"inner", "e": b"e", "lnk": ("->", "/etc")}


@pytest.fixture
def layout(box: Path) -> tuple[Layout, dict[str, Any], dict[str, Any]]:
    lay = Layout(box / "image")
    l1 = lay.layer(L1, "gz")
    v1 = lay.image([l1])
    latest = lay.image([l1, lay.layer(L2, ""), lay.layer(L3, "zst")])
    lay.index([(v1, "example.com/img:v1"), (latest, "latest")])
    return lay, v1, latest


def test_oci_layers_whiteouts_and_opaque_dirs(box: Path, layout: Any) -> None:
    lay, _, latest = layout
    calls: list[tuple[str, int, int | None]] = []
    meta = import_into(f"oci:{lay.root}", str(box / "dest"), progress=lambda *a: calls.append(a))
    assert listing(box / "dest") == EXPECTED_LATEST
    assert meta["layers"] == 3 and meta["format"] == "oci"
    oci = meta["oci"]
    assert oci["digest"] == latest["digest"] and oci["tag"] == "latest"
    assert oci["config"]["Cmd"] == ["/bin/sh"] and oci["config"]["WorkingDir"] == "/srv"
    assert (oci["os"], oci["created"]) == ("linux", "2024-01-02T03:04:05Z")
    assert (meta["os_id"], meta["os_version"], meta["os_name"]) == ("layered", "3", "Layered 3")
    assert {c[0] for c in calls} >= {"layer 1/3", "layer 2/3", "layer 3/3"}


def test_oci_tag_selection(box: Path, layout: Any) -> None:
    lay, v1, _ = layout
    meta = import_into(f"oci:{lay.root}:v1", str(box / "dest"))
    assert listing(box / "dest") == EXPECTED_V1
    assert meta["oci"]["digest"] == v1["digest"] and meta["oci"]["tag"] == "v1"
    refused(box, f"oci:{lay.root}:nope", "has no tag 'nope'")


def test_oci_nested_index_picks_host_platform(box: Path) -> None:
    lay = Layout(box / "image")
    other = lay.image([lay.layer([f("which", b"other")])], arch="mips64le")
    mine = lay.image([lay.layer([f("which", b"mine")])])
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{**other, "platform": {"os": "linux", "architecture": "notmine"}},
                           {**mine, "platform": {"os": "linux",
                                                 "architecture": importer._host_arch()}}]}
    idesc = lay.blob(json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json")
    lay.index([(idesc, None)])
    meta = import_into(f"oci:{lay.root}", str(box / "dest"))
    assert (box / "dest/which").read_bytes() == b"mine"
    assert meta["oci"]["digest"] == mine["digest"]


def test_oci_corrupt_blobs_are_refused(box: Path, layout: Any) -> None:
    lay, _, latest = layout
    manifest = json.loads((lay.root / "blobs/sha256" / latest["digest"][7:]).read_bytes())
    layer = lay.root / "blobs/sha256" / manifest["layers"][1]["digest"][7:]
    data = bytearray(layer.read_bytes())
    data[600] ^= 0xFF                                   # same size, different content
    layer.write_bytes(bytes(data))
    refused(box, f"oci:{lay.root}", rf"blob {manifest['layers'][1]['digest']} is corrupt")
    layer.write_bytes(bytes(data) + b"\0")              # wrong size
    refused(box, f"oci:{lay.root}", "is corrupt: .* bytes instead of")
    layer.unlink()
    refused(box, f"oci:{lay.root}", "is missing")


def test_oci_malformed_digest_is_refused(box: Path) -> None:
    lay = Layout(box / "image")
    lay.index([({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": "sha256:../../../outside/keep", "size": 9}, None)])
    refused(box, f"oci:{lay.root}", "malformed digest")


OCI_HOSTILE: dict[str, tuple[Callable[[Path], list[list[Member]]], str]] = {
    "dotdot in a layer": (lambda out: [[f("../outside/keep", b"pwned")]],
                          "layer 1/1 member '../outside/keep' is refused: path leaves the tree"),
    "whiteout through symlink": (lambda out: [[sym("lib", str(out))], [f("lib/.wh.keep")]],
                                 "layer 2/2 member 'lib/.wh.keep' is refused: path goes through"),
    "opaque through symlink": (lambda out: [[sym("lib", str(out))], [f("lib/.wh..wh..opq")]],
                               "path goes through a symlink"),
    "write through earlier layer's symlink": (lambda out: [[sym("lib", str(out))],
                                                           [f("lib/keep", b"pwned")]],
                                              "path goes through a symlink"),
    "whiteout of nothing": (lambda out: [[f("a/.wh.")]], "whiteout names no file"),
    "overlay whiteout device": (lambda out: [[dev("x", tarfile.CHRTYPE, 0, 0)]], "overlayfs"),
    "hard link into lower symlink": (lambda out: [[sym("lib", str(out))], [hl("h", "lib/keep")]],
                                     "not a regular file written earlier"),
}


@pytest.mark.parametrize("case", OCI_HOSTILE, ids=list(OCI_HOSTILE))
def test_hostile_oci_layer_is_refused(box: Path, case: str) -> None:
    build, match = OCI_HOSTILE[case]
    lay = Layout(box / "image")
    lay.index([(lay.image([lay.layer(m) for m in build(box / "outside")]), "latest")])
    refused(box, f"oci:{lay.root}", match)


def _archive_layout(lay: Layout, path: Path) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(lay.root.iterdir()):
            tar.add(entry, arcname=entry.name)
    return path


def test_oci_archive(box: Path, layout: Any) -> None:
    lay, v1, _ = layout
    archive = _archive_layout(lay, box / "img.tar")
    meta = import_into(f"oci-archive:{archive}:v1", str(box / "dest"))
    assert listing(box / "dest") == EXPECTED_V1
    assert meta["format"] == "oci-archive" and meta["oci"]["digest"] == v1["digest"]
    assert not (box / "dest.oci-tmp").exists()


def test_oci_archive_hostile_and_scratch_handling(box: Path, layout: Any) -> None:
    evil = write_tar(box / "evil.tar", [f("oci-layout", b"{}"), f("../outside/keep", b"pwned")])
    refused(box, f"oci-archive:{evil}", "path leaves the tree")       # scratch removed too
    lay, _, _ = layout
    archive = _archive_layout(lay, box / "img.tar")
    (box / "dest.oci-tmp").mkdir()
    with pytest.raises(ConflictError, match="already exists"):
        import_into(f"oci-archive:{archive}", str(box / "dest"))
