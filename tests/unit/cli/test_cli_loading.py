"""calico.cli.loading: YAML/JSON/List input, namespace rules, all-or-nothing validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calico.cli import loading

POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: {name}
spec:
  cidr: {cidr}
"""


def write(tmp_path: Path, text: str, name: str = "in.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_multi_document_yaml_with_empty_documents(tmp_path: Path) -> None:
    text = "---\n" + POOL.format(name="a", cidr="10.1.0.0/16") + "---\n---\n"
    text += POOL.format(name="b", cidr="10.2.0.0/16")
    got = loading.load(write(tmp_path, text))
    assert [r["metadata"]["name"] for r in got] == ["a", "b"]
    assert got[0]["spec"]["blockSize"] == 26  # validated and defaulted


def test_json_object_array_and_list_kinds(tmp_path: Path) -> None:
    one = {"kind": "IPPool", "metadata": {"name": "a"}, "spec": {"cidr": "10.1.0.0/16"}}
    two = {**one, "metadata": {"name": "b"}}
    assert len(loading.load(write(tmp_path, json.dumps(one), "a.json"))) == 1
    assert len(loading.load(write(tmp_path, json.dumps([one, two]), "b.json"))) == 2
    lst = {"apiVersion": "projectcalico.org/v3", "kind": "List", "items": [one, two]}
    assert len(loading.load(write(tmp_path, json.dumps(lst), "c.json"))) == 2
    typed = {**lst, "kind": "IPPoolList"}
    assert len(loading.load(write(tmp_path, json.dumps(typed), "d.json"))) == 2


def test_one_bad_document_fails_the_whole_load_and_names_it(tmp_path: Path) -> None:
    text = POOL.format(name="good", cidr="10.1.0.0/16") + "---\n"
    text += POOL.format(name="bad", cidr="10.0.0.0/99") + "---\n"
    text += POOL.format(name="good2", cidr="10.2.0.0/16")
    with pytest.raises(loading.LoadError) as info:
        loading.load(write(tmp_path, text))
    msg = str(info.value)
    assert "1 of 3 resource(s)" in msg
    assert "nothing was written" in msg
    assert "document 2: IPPool(bad): spec.cidr: invalid CIDR '10.0.0.0/99'" in msg
    assert "good" not in msg.replace("good2", "").split("nothing was written")[1]


def test_every_bad_document_is_listed(tmp_path: Path) -> None:
    text = POOL.format(name="Bad1", cidr="10.1.0.0/16") + "---\n"
    text += "kind: Pod\nmetadata: {name: x}\n---\n- 1\n"
    with pytest.raises(loading.LoadError) as info:
        loading.load(write(tmp_path, text))
    msg = str(info.value)
    assert "3 of 3" in msg
    assert "document 1: IPPool(Bad1): metadata.name" in msg
    assert "document 2: Pod(x): kind: unknown kind 'Pod'" in msg
    assert "document 3, item 1: resource: must be a mapping, got 1" in msg


def test_unparseable_and_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(loading.LoadError, match="cannot parse"):
        loading.load(write(tmp_path, "kind: [unclosed\n"))
    with pytest.raises(loading.LoadError, match="No resources specified"):
        loading.load(write(tmp_path, "---\n"))
    with pytest.raises(loading.LoadError, match="cannot read"):
        loading.load(str(tmp_path / "missing.yaml"))


def test_namespace_rules(tmp_path: Path) -> None:
    np = "kind: NetworkPolicy\nmetadata: {name: np}\nspec: {}\n"
    path = write(tmp_path, np)
    assert loading.load(path)[0]["metadata"]["namespace"] == "default"
    assert loading.load(path, namespace="prod")[0]["metadata"]["namespace"] == "prod"
    path = write(tmp_path, "kind: NetworkPolicy\nmetadata: {name: np, namespace: dev}\n", "b.yaml")
    with pytest.raises(loading.LoadError, match="does not match --namespace 'prod'"):
        loading.load(path, namespace="prod")
    path = write(tmp_path, "kind: IPPool\nmetadata: {name: p, namespace: dev}\n", "c.yaml")
    with pytest.raises(loading.LoadError, match="IPPool is not namespaced"):
        loading.load(path)


def test_identity_only_load_for_delete(tmp_path: Path) -> None:
    # delete -f needs only kind and name: a spec that is no longer valid still identifies it
    path = write(tmp_path, "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: nonsense}\n")
    assert loading.load(path, full=False)[0]["metadata"]["name"] == "p"
    with pytest.raises(loading.LoadError, match="invalid CIDR"):
        loading.load(path)
    path = write(tmp_path, "kind: IPPool\nmetadata: {}\n", "b.yaml")
    with pytest.raises(loading.LoadError, match=r"metadata\.name: required"):
        loading.load(path, full=False)


def test_directory_reads_yaml_and_json_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(POOL.format(name="b", cidr="10.2.0.0/16"))
    (tmp_path / "a.json").write_text(
        json.dumps({"kind": "IPPool", "metadata": {"name": "a"}, "spec": {"cidr": "10.1.0.0/16"}})
    )
    (tmp_path / "notes.txt").write_text("not a resource")
    assert [r["metadata"]["name"] for r in loading.load(str(tmp_path))] == ["a", "b"]
    (tmp_path / "c.yml").write_text(POOL.format(name="c", cidr="bogus"))
    with pytest.raises(loading.LoadError, match=r"c\.yml, document 1: IPPool\(c\): spec\.cidr"):
        loading.load(str(tmp_path))
