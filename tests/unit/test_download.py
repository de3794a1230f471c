from __future__ import annotations

import json

import pytest

from pipeline.data.datasets import DATASETS
from pipeline.data.download import DownloadError, fetch_dataset, load_checksum_overrides, verify_files
from tools.fake_data import md5, write_fashion_mnist


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    (root / "fashion_mnist").mkdir(parents=True)
    write_fashion_mnist(root / "fashion_mnist", train=60, test=20)
    sums = {"fashion_mnist": {p.name: md5(p) for p in (root / "fashion_mnist").iterdir()}}
    return root, sums


def _write_record(out, fetched):
    (out / "files.json").write_text(fetched.to_json())


def test_local_mirror_is_verified_and_copied(tmp_path, mirror):
    root, sums = mirror
    out = tmp_path / "raw"
    fetched = fetch_dataset("fashion_mnist", out, mirror=str(root), overrides=sums, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in out.iterdir()) == sorted(DATASETS["fashion_mnist"].md5)
    assert fetched.published is False and fetched.md5 == sums["fashion_mnist"]
    _write_record(out, fetched)
    assert verify_files(out).md5 == sums["fashion_mnist"]


def test_http_mirror_on_localhost(tmp_path, mirror, http_server):
    root, sums = mirror
    out = tmp_path / "raw"
    base = http_server(root)
    fetch_dataset("fashion_mnist", out, mirror=base + "/", overrides=sums, cache_dir=tmp_path / "cache")
    assert {p.name: md5(p) for p in out.iterdir()} == sums["fashion_mnist"]


def test_wrong_checksum_is_refused_and_nothing_is_kept(tmp_path, mirror):
    root, sums = mirror
    sums["fashion_mnist"]["t10k-labels-idx1-ubyte.gz"] = "0" * 32
    out, cache = tmp_path / "raw", tmp_path / "cache"
    with pytest.raises(DownloadError, match="t10k-labels-idx1-ubyte.gz .*failed verification"):
        fetch_dataset("fashion_mnist", out, mirror=str(root), overrides=sums, cache_dir=cache)
    assert not (out / "t10k-labels-idx1-ubyte.gz").exists()
    assert not (cache / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_an_md5_override_in_upper_case_is_accepted(tmp_path, mirror):
    root, sums = mirror
    path = tmp_path / "sums.json"  # BNBENCH_DATA_CHECKSUMS names this file
    path.write_text(
        json.dumps({"fashion_mnist": {name: digest.upper() for name, digest in sums["fashion_mnist"].items()}})
    )
    overrides = load_checksum_overrides(str(path))
    out = tmp_path / "raw"
    fetched = fetch_dataset("fashion_mnist", out, mirror=str(root), overrides=overrides, cache_dir=tmp_path / "cache")
    # recorded in lower case, as the md5 it is; not the published data
    assert fetched.md5 == sums["fashion_mnist"] and fetched.published is False
    _write_record(out, fetched)
    assert verify_files(out).md5 == sums["fashion_mnist"]  # and the files pass the check before prepare


def test_published_checksums_refuse_other_bytes(tmp_path, mirror):
    root, _ = mirror  # synthetic files: not the published ones
    with pytest.raises(DownloadError, match="failed verification"):
        fetch_dataset("fashion_mnist", tmp_path / "raw", mirror=str(root), overrides={}, cache_dir=tmp_path / "c")


def test_missing_file_on_http_mirror_names_the_url(tmp_path, http_server):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:\d+/fashion_mnist/\S+ answered HTTP 404"):
        fetch_dataset(
            "fashion_mnist", tmp_path / "raw", mirror=http_server(empty), overrides={}, cache_dir=tmp_path / "c"
        )


def test_mirror_that_is_not_a_directory(tmp_path):
    with pytest.raises(DownloadError, match="not a directory"):
        fetch_dataset("cifar10", tmp_path / "raw", mirror=str(tmp_path / "nope"), overrides={}, cache_dir=tmp_path)


def test_tampered_file_is_caught_before_parsing(tmp_path, mirror):
    root, sums = mirror
    out = tmp_path / "raw"
    _write_record(out, fetch_dataset("fashion_mnist", out, mirror=str(root), overrides=sums, cache_dir=tmp_path / "c"))
    (out / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="does not match"):
        verify_files(out)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "cannot read it as JSON"),
        (json.dumps({"mnist": {}}), "unknown dataset 'mnist'"),
        (json.dumps({"cifar10": {"cifar-10-python.tar.gz": "0" * 32}}), "has no file"),
        (json.dumps({"cifar10": {"cifar-10-binary.tar.gz": "xyz"}}), "is not an md5"),
    ],
)
def test_bad_checksum_overrides_are_named(tmp_path, content, needle):
    path = tmp_path / "sums.json"
    path.write_text(content)
    with pytest.raises(DownloadError, match=needle):
        load_checksum_overrides(str(path))
