"""Templates imported from rootfs tarballs, directories and OCI images, through the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from conftest import Corral


def _tar_of(tree: Path, out: Path, *, compress: str = "") -> Path:
    flags = {"": [], "zst": ["--zstd"], "gz": ["-z"], "xz": ["-J"]}[compress]
    subprocess.run(["tar", "--numeric-owner", "--xattrs", *flags, "-C", str(tree), "-cf",
                    str(out), "."], check=True)
    return out


def test_import_tarballs_and_directories_then_run(corral: Corral, state_root: Path,
                                                  tmp_path: Path) -> None:
    tree = state_root / "templates" / "tiny" / "rootfs"
    for ext, compress in (("tar", ""), ("tar.zst", "zst"), ("tar.xz", "xz")):
        name = f"imp-{ext.replace('.', '-')}"
        archive = _tar_of(tree, tmp_path / f"root.{ext}", compress=compress)
        out = corral("template", "import", str(archive), name)
        assert f"template '{name}' imported" in out
        assert corral("run", "--rm", "--template", name, "--", "cat", "/etc/os-release").startswith(
            "NAME=\"Corral tiny\"")
    corral("template", "import", str(tree), "from-dir")
    info = corral.json("template", "info", "from-dir")
    assert info["kind"] == "import:dir" and info["os"] == "corral-tiny"  # type: ignore[index]
    corral("create", "c", "--template", "from-dir", "--start")
    assert corral("exec", "c", "--", "hostname").strip() == "c"
    listed = {t["name"] for t in corral.json("template", "list")}  # type: ignore[union-attr]
    assert {"imp-tar", "imp-tar-zst", "imp-tar-xz", "from-dir", "tiny"} <= listed
    taken = corral.run("template", "import", str(tree), "from-dir", check=False)
    assert taken.returncode != 0 and "already exists" in taken.stderr


def test_hostile_archives_are_refused_and_leave_nothing(corral: Corral, state_root: Path,
                                                        tmp_path: Path) -> None:
    sentinel = tmp_path / "outside"
    sentinel.mkdir()

    def archive(name: str, *members: tarfile.TarInfo, data: bytes = b"x") -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w") as tf:
            for m in members:
                if m.isfile():
                    m.size = len(data)
                    tf.addfile(m, io.BytesIO(data))
                else:
                    tf.addfile(m)
        return path

    def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
        m = tarfile.TarInfo(name)
        m.type, m.linkname = kind, link
        return m

    cases = {
        "dotdot.tar": (member(f"../{sentinel.name}/evil"),),
        "absolute.tar": (member(f"{sentinel}/evil"),),
        "through-link.tar": (member("lib", tarfile.SYMTYPE, str(sentinel)), member("lib/evil")),
        "hardlink-out.tar": (member("h", tarfile.LNKTYPE, "/etc/shadow"),),
        "device.tar": (member("dev/sda", tarfile.BLKTYPE),),
    }
    for fname, members in cases.items():
        p = corral.run("template", "import", str(archive(fname, *members)), "bad", check=False)
        assert p.returncode != 0, fname
        assert "refused" in p.stderr and "Traceback" not in p.stderr, (fname, p.stderr)
        assert list(sentinel.iterdir()) == [], fname
        assert not (state_root / "templates" / "bad").exists()
        assert not [n for n in os.listdir(state_root / "templates") if n.startswith(".")]
    broken = tmp_path / "broken.tar.zst"
    good = _tar_of(state_root / "templates" / "tiny" / "rootfs", tmp_path / "g.tar.zst",
                   compress="zst").read_bytes()
    broken.write_bytes(good[: len(good) // 2])
    p = corral.run("template", "import", str(broken), "bad", check=False)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert not (state_root / "templates" / "bad").exists()


def _blob(layout: Path, data: bytes, media: str) -> dict:  # type: ignore[type-arg]
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}


def _layer(files: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            m = tarfile.TarInfo(name)
            if data is None:
                m.type = tarfile.DIRTYPE
                m.mode = 0o755
                tf.addfile(m)
            else:
                m.size, m.mode = len(data), 0o755
                tf.addfile(m, io.BytesIO(data))
    return buf.getvalue()


def test_oci_layout_layers_whiteouts_and_config(corral: Corral, state_root: Path,
                                                tmp_path: Path) -> None:
    base = state_root / "templates" / "tiny" / "rootfs"
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    tar_media = "application/vnd.oci.image.layer.v1.tar"
    first = _tar_of(base, tmp_path / "l1.tar").read_bytes()
    second = _layer({"app": None, "app/run.sh": b"#!/bin/sh\necho from-oci\n",
                     "etc/.wh.shells": b"", "etc/motd": b"layer two\n"})
    third = _layer({"etc/motd": b"layer three\n"})
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": ["/app/run.sh"], "Env": ["PATH=/bin"], "WorkingDir": "/app"},
              "rootfs": {"type": "layers", "diff_ids": []}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": _blob(layout, json.dumps(config).encode(),
                                "application/vnd.oci.image.config.v1+json"),
                "layers": [_blob(layout, blob, tar_media) for blob in (first, second, third)]}
    mdesc = _blob(layout, json.dumps(manifest).encode(),
                  "application/vnd.oci.image.manifest.v1+json")
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))

    corral("template", "import", f"oci:{layout}:v1", "app")
    info = corral.json("template", "info", "app")
    assert info["oci"]["config"]["Cmd"] == ["/app/run.sh"]  # type: ignore[index]
    out = corral("run", "--rm", "--template", "app", "--", "sh", "-c",
                 "/app/run.sh; cat /etc/motd; test -e /etc/shells || echo whited-out")
    assert out == "from-oci\nlayer three\nwhited-out\n"
    missing = corral.run("template", "import", f"oci:{layout}:v9", "app2", check=False)
    assert missing.returncode != 0 and "v9" in missing.stderr
    # a blob that does not match its digest is refused
    victim = layout / "blobs" / "sha256" / mdesc["digest"].split(":")[1]
    victim.write_bytes(victim.read_bytes().replace(b"schemaVersion", b"schemaversion"))
    bad = corral.run("template", "import", f"oci:{layout}:v1", "app3", check=False)
    assert bad.returncode != 0 and "corrupt" in bad.stderr
    assert not (state_root / "templates" / "app3").exists()
