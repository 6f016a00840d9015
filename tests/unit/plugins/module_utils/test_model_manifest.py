"""Tests of module_utils.model_manifest: paths, sources, Hub listings, planning, space, progress."""

import json
import time
from pathlib import Path

import pytest

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_manifest import (
    ManifestError,
    bytes_to_fetch,
    check_path,
    diff_lines,
    format_progress,
    git_blob_id,
    human_bytes,
    lfs_pointer,
    manifest_from_hub_info,
    parse_manifest,
    parse_rsync_listing,
    parse_source,
    partial_key,
    plan_sync,
    render_manifest,
    select_paths,
    settle_hashes,
    space_problem,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "model_sync"
GPT2_COMMIT = "607a30d783dfa663caf39e06633721c8d4cfcd7e"
GPT2_SAFETENSORS_SHA256 = "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707"
SHA_A = "a" * 64
SHA_B = "b" * 64


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["config.json", "original/params.json", ".gitattributes", "a/b/c/d.safetensors", "a b/ü.txt"],
)
def test_check_path_accepts_relative_paths(path):
    assert check_path(path) == path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside", "'..'"),
        ("a/../../b", "'..'"),
        ("a//b", "empty"),
        ("./a", "'.'"),
        ("a/", "empty"),
        ("", "non-empty"),
        (None, "non-empty"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "NUL"),
        (".llmops-manifest.json", "reserves"),
        (".llmops-partial/x", "reserves"),
    ],
)
def test_check_path_refuses_paths_that_escape_or_collide(path, why):
    with pytest.raises(ManifestError, match=why):
        check_path(path)


def test_select_paths_include_and_exclude_globs():
    entries = [{"path": p} for p in ("a.safetensors", "original/x.pth", "config.json", "README.md")]
    assert [e["path"] for e in select_paths(entries, [], ["original/*"])] == [
        "a.safetensors",
        "config.json",
        "README.md",
    ]
    assert [e["path"] for e in select_paths(entries, ["*.safetensors", "*.json"], [])] == [
        "a.safetensors",
        "config.json",
    ]


# --- sources -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "revision", "expected"),
    [
        (
            "hf://Qwen/Qwen3-30B-A3B",
            "",
            {"kind": "hf", "repo_id": "Qwen/Qwen3-30B-A3B", "revision": ""},
        ),
        (
            "hf://Qwen/Qwen3-30B-A3B@main",
            "",
            {"kind": "hf", "repo_id": "Qwen/Qwen3-30B-A3B", "revision": "main"},
        ),
        (
            "hf://org/m.v1",
            GPT2_COMMIT,
            {"kind": "hf", "repo_id": "org/m.v1", "revision": GPT2_COMMIT},
        ),
        ("hf://org/m@v1", "v1", {"kind": "hf", "repo_id": "org/m", "revision": "v1"}),
        ("/srv/models/qwen/", "", {"kind": "local", "path": "/srv/models/qwen"}),
        (
            "rsync://cache01:8730/models/qwen",
            "",
            {"kind": "rsync", "url": "rsync://cache01:8730/models/qwen"},
        ),
        (
            "cache01:/home/llm/model/qwen",
            "",
            {"kind": "rsync", "url": "cache01:/home/llm/model/qwen"},
        ),
        ("llm@10.0.0.5:/m/", "", {"kind": "rsync", "url": "llm@10.0.0.5:/m"}),
        (
            "https://mirror.example/models/qwen/",
            "",
            {"kind": "http", "url": "https://mirror.example/models/qwen"},
        ),
    ],
)
def test_parse_source(source, revision, expected):
    assert parse_source(source, revision) == expected


@pytest.mark.parametrize(
    ("source", "revision", "message"),
    [
        ("hf://Qwen", "", "expected hf://<org>/<name>"),
        ("hf://a/b/c", "", "expected hf://<org>/<name>"),
        ("hf://org/m@v1", "v2", "pins revision"),
        ("/srv/models/qwen", "main", "revision applies to hf:// sources only"),
        ("models/qwen", "", "not one of"),
        ("ftp://host/x", "", "not one of"),
        ("", "", "non-empty"),
    ],
)
def test_parse_source_refuses(source, revision, message):
    with pytest.raises(ManifestError, match=message):
        parse_source(source, revision)


# --- Hub listings (real data, see tests/fixtures/model_sync/SOURCES.md) -------------------


def test_lfs_pointer_and_blob_id_match_a_real_hub_tree_entry():
    entry = fixture("hub_tree_entry_whisper_ggml_tiny.json")
    pointer = lfs_pointer(entry["lfs"]["oid"], entry["lfs"]["size"])
    assert len(pointer) == entry["lfs"]["pointerSize"]
    assert git_blob_id(pointer) == entry["oid"]


def test_gpt2_model_info_becomes_a_manifest():
    commit, entries = manifest_from_hub_info(fixture("hub_model_info_gpt2_blobs.json"))
    assert commit == GPT2_COMMIT
    by_path = {e["path"]: e for e in entries}
    assert [e["path"] for e in entries] == sorted(by_path)
    weights = by_path["model.safetensors"]
    # LFS: the payload's size and sha256, not the pointer's.
    assert weights == {
        "path": "model.safetensors",
        "size": 548105171,
        "sha256": GPT2_SAFETENSORS_SHA256,
    }
    # Stored in git: no sha256 published, the git blob id is what the bytes are checked against.
    assert by_path["config.json"] == {
        "path": "config.json",
        "size": 665,
        "sha256": None,
        "git_sha1": "10c66461e4c109db5a2196bff4bb59be30396ed8",
    }
    assert sum(e["size"] for e in entries) == 550_967_953


def test_gpt2_fixture_lfs_blob_id_is_the_pointer_blob():
    info = fixture("hub_model_info_gpt2_blobs.json")
    sibling = next(s for s in info["siblings"] if s["rfilename"] == "model.safetensors")
    assert (
        git_blob_id(lfs_pointer(sibling["lfs"]["sha256"], sibling["lfs"]["size"]))
        == sibling["blobId"]
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda i: i.pop("sha"), "no commit sha"),
        (lambda i: i.pop("siblings"), "no file list"),
        (
            lambda i: i["siblings"].append(
                {"rfilename": "../../etc/cron.d/x", "size": 1, "blobId": "0" * 40}
            ),
            "'..'",
        ),
        (
            lambda i: i["siblings"].append({"rfilename": "/abs", "size": 1, "blobId": "0" * 40}),
            "absolute",
        ),
        (
            lambda i: i["siblings"].append({"rfilename": "x.bin", "size": 5}),
            "neither LFS sha256 nor a blobId",
        ),
        (lambda i: i["siblings"].append({"rfilename": "y.bin", "blobId": "0" * 40}), "no size"),
        (
            lambda i: i["siblings"].append(
                {"rfilename": "z.bin", "size": 3, "lfs": {"size": 3, "sha256": "xyz"}}
            ),
            "no sha256",
        ),
        (lambda i: i["siblings"].append(dict(i["siblings"][0])), "listed twice"),
        (
            lambda i: i["siblings"].append(
                {"rfilename": "config.json/inner", "size": 1, "blobId": "0" * 40}
            ),
            "file and a directory",
        ),
    ],
)
def test_hub_listing_refuses_bad_metadata(mutate, message):
    info = fixture("hub_model_info_gpt2_blobs.json")
    mutate(info)
    with pytest.raises(ManifestError, match=message):
        manifest_from_hub_info(info)


# --- rsync listings ------------------------------------------------------------------------

RSYNC_LISTING = """\
drwxr-xr-x           4096 2026/01/05 10:00:00 .
-rw-r--r--            123 2026/01/05 10:00:01 .llmops-manifest.json
-rw-r--r--       1,234,567 2026/01/05 10:00:02 model-00001-of-00002.safetensors
drwxr-xr-x           4096 2026/01/05 10:00:00 sub
-rw-r--r--              3 2026/01/05 10:00:03 sub/a b.txt
-rw-r--r--              4 2026/01/05 10:00:04 sub/caf\\#303\\#251.txt
"""


def test_parse_rsync_listing_keeps_files_and_mtimes():
    entries = parse_rsync_listing(RSYNC_LISTING)
    assert [e["path"] for e in entries] == [
        "model-00001-of-00002.safetensors",
        "sub/a b.txt",
        "sub/café.txt",
    ]
    assert entries[0]["size"] == 1234567
    expected = int(time.mktime((2026, 1, 5, 10, 0, 2, 0, 0, -1))) * 1_000_000_000
    assert entries[0]["source_mtime_ns"] == expected
    assert all(e["sha256"] is None for e in entries)


def test_parse_rsync_listing_refuses_garbage():
    with pytest.raises(ManifestError, match="cannot parse"):
        parse_rsync_listing("@ERROR: auth failed on module models\n")


# --- manifest files ------------------------------------------------------------------------


def test_manifest_round_trip_is_stable():
    entries = [
        {"path": "b.bin", "size": 2, "sha256": SHA_B, "mtime_ns": 5},
        {"path": "a/c.json", "size": 1, "sha256": SHA_A, "mtime_ns": 7, "git_sha1": "1" * 40},
    ]
    text = render_manifest("hf://o/m", GPT2_COMMIT, entries)
    assert text == render_manifest("hf://o/m", GPT2_COMMIT, list(reversed(entries)))
    parsed = parse_manifest(text)
    assert parsed["revision"] == GPT2_COMMIT
    assert parsed["source"] == "hf://o/m"
    assert [e["path"] for e in parsed["files"]] == ["a/c.json", "b.bin"]
    assert render_manifest(parsed["source"], parsed["revision"], parsed["files"]) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"version": 2, "files": []}', "not a version 1"),
        ('{"version": 1, "files": {}}', "not a list"),
        ('{"version": 1, "files": [{"path": "../x", "size": 1, "sha256": null}]}', "'..'"),
        ('{"version": 1, "files": [{"path": "x", "size": -1, "sha256": null}]}', "size"),
        ('{"version": 1, "files": [{"path": "x", "size": 1, "sha256": "nothex"}]}', "sha256"),
        ('{"version": 1, "files": [{"path": "x", "size": 1, "mtime_ns": "1"}]}', "mtime_ns"),
    ],
)
def test_parse_manifest_refuses(text, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text, "m.json")


# --- planning ------------------------------------------------------------------------------


def entry(path, size=10, sha256=SHA_A, **extra):
    return dict(path=path, size=size, sha256=sha256, **extra)


def test_plan_fast_keeps_files_whose_size_and_mtime_match_the_manifest():
    desired = [entry("a"), entry("b", sha256=SHA_B)]
    recorded = {"a": entry("a", mtime_ns=100), "b": entry("b", sha256=SHA_B, mtime_ns=200)}
    plan = plan_sync(desired, recorded, {"a": (10, 100), "b": (10, 200)}, "fast")
    assert [e["path"] for e in plan["keep"]] == ["a", "b"]
    assert not plan["transfer"]
    assert not plan["rehash"]
    assert not plan["adopt"]


def test_plan_full_rehashes_everything_in_place():
    desired = [entry("a")]
    plan = plan_sync(desired, {"a": entry("a", mtime_ns=100)}, {"a": (10, 100)}, "full")
    assert [e["path"] for e in plan["rehash"]] == ["a"]
    assert not plan["keep"]


@pytest.mark.parametrize(
    ("recorded", "present", "group", "reason"),
    [
        ({}, {"a": None}, "transfer", "missing"),
        ({"a": entry("a", mtime_ns=100)}, {"a": (10, 101)}, "adopt", "mtime differ"),
        ({"a": entry("a", mtime_ns=100)}, {"a": (9, 100)}, "transfer", "size 9 != 10"),
        ({"a": entry("a", sha256=SHA_B, mtime_ns=100)}, {"a": (10, 100)}, "adopt", "other content"),
        ({}, {"a": (10, 5)}, "adopt", "not in the manifest"),
        ({}, {"a": (11, 5)}, "transfer", "size 11 != 10"),
    ],
)
def test_plan_sends_each_case_where_it_belongs(recorded, present, group, reason):
    plan = plan_sync([entry("a")], recorded, present, "fast")
    assert [e["path"] for e in plan[group]] == ["a"]
    assert reason in plan[group][0]["reason"]


def test_plan_without_source_hashes_compares_source_mtime():
    want = {"path": "a", "size": 10, "sha256": None, "source_mtime_ns": 42}
    same = {"a": dict(want, sha256=SHA_A, mtime_ns=100)}
    assert plan_sync([want], same, {"a": (10, 100)}, "fast")["keep"]
    newer = dict(want, source_mtime_ns=43)
    plan = plan_sync([newer], same, {"a": (10, 100)}, "fast")
    # No hash to compare an unrecorded file with: copy it again.
    assert [e["path"] for e in plan["transfer"]] == ["a"]


def test_plan_git_blob_id_identifies_files_without_sha256():
    want = {"path": "config.json", "size": 665, "sha256": None, "git_sha1": "1" * 40}
    recorded = {"config.json": dict(want, sha256=SHA_A, mtime_ns=9)}
    plan = plan_sync([want], recorded, {"config.json": (665, 9)}, "fast")
    assert plan["keep"][0]["sha256"] == SHA_A
    plan = plan_sync([dict(want, git_sha1="2" * 40)], recorded, {"config.json": (665, 9)}, "fast")
    assert [e["path"] for e in plan["adopt"]] == ["config.json"]


def test_plan_removes_only_files_an_earlier_sync_wrote():
    recorded = {"a": entry("a", mtime_ns=1), "old.bin": entry("old.bin", mtime_ns=1)}
    present = {"a": (10, 1), "old.bin": (10, 1), "gone.bin": None}
    recorded["gone.bin"] = entry("gone.bin", mtime_ns=1)
    plan = plan_sync([entry("a")], recorded, present, "fast")
    assert [e["path"] for e in plan["remove"]] == ["old.bin"]


def test_plan_refuses_unknown_verify_mode():
    with pytest.raises(ManifestError, match="fast, full"):
        plan_sync([], {}, {}, "sometimes")


def test_settle_hashes_repairs_mismatches_and_adopts_matches():
    desired = [entry("ok"), entry("flipped"), entry("handmade", sha256=SHA_B), entry("stranger")]
    recorded = {"ok": entry("ok", mtime_ns=1), "flipped": entry("flipped", mtime_ns=1)}
    present = {"ok": (10, 1), "flipped": (10, 1), "handmade": (10, 3), "stranger": (10, 4)}
    plan = plan_sync(desired, recorded, present, "full")
    hashes = {
        "ok": {"sha256": SHA_A, "mtime_ns": 1},
        "flipped": {"sha256": "c" * 64, "mtime_ns": 1},
        "handmade": {"sha256": SHA_B, "mtime_ns": 3},
        "stranger": {"sha256": "d" * 64, "mtime_ns": 4},
    }
    settled = settle_hashes(plan, hashes)
    assert [e["path"] for e in settled["keep"]] == ["handmade", "ok"]
    assert [e["path"] for e in settled["adopted"]] == ["handmade"]
    assert [e["path"] for e in settled["repaired"]] == ["flipped"]
    assert [e["path"] for e in settled["transfer"]] == ["flipped", "stranger"]
    assert settled["transfer"][0]["reason"] == "hash differs from the manifest"
    assert "mtime_ns" not in settled["transfer"][0]


def test_settle_hashes_checks_git_blob_ids():
    want = {"path": "c.json", "size": 3, "sha256": None, "git_sha1": "1" * 40}
    plan = plan_sync([want], {}, {"c.json": (3, 8)}, "fast")
    good = settle_hashes(plan, {"c.json": {"sha256": SHA_A, "git_sha1": "1" * 40, "mtime_ns": 8}})
    assert good["keep"][0]["sha256"] == SHA_A
    bad = settle_hashes(plan, {"c.json": {"sha256": SHA_A, "git_sha1": "2" * 40, "mtime_ns": 8}})
    assert [e["path"] for e in bad["transfer"]] == ["c.json"]


# --- resume and space ----------------------------------------------------------------------


def test_partial_key_changes_with_the_content_it_is_meant_to_become():
    base = entry("model.safetensors", size=100)
    assert partial_key(base) == partial_key(dict(base))
    assert partial_key(base) != partial_key(dict(base, sha256=SHA_B))
    assert partial_key(base) != partial_key(dict(base, size=101))
    assert partial_key(base) != partial_key(dict(base, path="other"))
    local = {"path": "a", "size": 1, "sha256": None, "source_mtime_ns": 1}
    assert partial_key(local) != partial_key(dict(local, source_mtime_ns=2))
    assert len(partial_key(base)) == 40


@pytest.mark.parametrize(
    ("partials", "expected"),
    [
        ({}, 300),
        ({"a": 40}, 260),
        ({"a": 100, "b": 200}, 0),
        ({"a": 150}, 300),  # longer than the file: not resumable, fetched whole
    ],
)
def test_bytes_to_fetch_counts_resumable_partials(partials, expected):
    assert bytes_to_fetch([entry("a", size=100), entry("b", size=200)], partials) == expected


@pytest.mark.parametrize(
    ("free", "needed", "margin", "refused"),
    [
        (100, 50, 0, False),
        (100, 100, 0, False),
        (100, 101, 0, True),
        (100, 50, 50, False),
        (100, 50, 51, True),
        (10, 0, 1000, False),  # nothing to write: never refused
    ],
)
def test_space_problem(free, needed, margin, refused):
    message = space_problem(free, needed, margin, "/home")
    assert (message is not None) == refused
    if refused:
        assert "not enough space on /home" in message
        assert "nothing written" in message


def test_space_problem_message_names_the_shortfall():
    gib = 1024**3
    message = space_problem(100 * gib, 80 * gib, 50 * gib, "/home/llm/model")
    assert "80.0 GiB still to write, 100.0 GiB free, and 50.0 GiB must stay free" in message
    assert "short by 30.0 GiB" in message


# --- reporting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (
            {
                "phase": "transfer",
                "bytes_done": 12 * 1024**3,
                "bytes_total": 48 * 1024**3,
                "files_done": 4,
                "files_total": 16,
                "elapsed": 60,
                "current": ["model-00005-of-00016.safetensors"],
            },
            "12.0 GiB / 48.0 GiB (25%), 4/16 files, 204.8 MiB/s, ETA 3m00s "
            "[model-00005-of-00016.safetensors]",
        ),
        (
            {
                "phase": "transfer",
                "bytes_done": 0,
                "bytes_total": 10,
                "files_total": 1,
                "elapsed": 0,
            },
            "0 B / 10 B (0%), 0/1 files",
        ),
        (
            {
                "phase": "verify",
                "bytes_done": 1024,
                "bytes_total": 2048,
                "files_done": 1,
                "files_total": 2,
            },
            "verify: 1.0 KiB / 2.0 KiB, 1/2 files",
        ),
        (
            {
                "bytes_done": 5,
                "bytes_total": 10,
                "elapsed": 1,
                "current": ["a", "b", "c", "d"],
                "files_total": 4,
            },
            "5 B / 10 B (50%), 0/4 files, 5 B/s, ETA 1s [a, b +2]",
        ),
    ],
)
def test_format_progress(progress, expected):
    assert format_progress(progress) == expected


def test_human_bytes_units():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**4) == "3.0 TiB"


def test_diff_lines_list_added_replaced_and_removed_files():
    settled = {
        "transfer": [
            entry("new.bin", reason="missing"),
            entry("changed.bin", reason="hash differs from the manifest"),
        ],
        "remove": [entry("old.bin")],
    }
    before, after = diff_lines(settled)
    assert before == "~ changed.bin (hash differs from the manifest)\n- old.bin (10 bytes)\n"
    assert after == f"+ new.bin (10 bytes, {SHA_A})\n~ changed.bin (10 bytes, {SHA_A})\n"
