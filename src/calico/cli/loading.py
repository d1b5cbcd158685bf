"""Reading resources for calicoctl: ``-f FILE``, ``-f DIR`` (its .yaml/.yml/.json files in name
order) or ``-f -``; YAML (multi-document) or JSON, with ``kind: List`` / ``<Kind>List`` documents
and JSON arrays flattened into their items.

Every document is checked before the command touches the datastore: a file with one bad document
fails as a whole (:class:`LoadError` lists each bad document with its position, kind and name), so
nothing is half-applied. Namespaces follow calicoctl's rules: a namespaced resource without one
takes ``-n`` or ``default``; a namespace that disagrees with ``-n`` is an error, and so is a
namespace on a non-namespaced kind.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from calico.model import kinds, validation

Resource = dict[str, Any]


class LoadError(Exception):
    """The input could not be read, or some document in it is invalid."""


@dataclass(frozen=True, slots=True)
class Loaded:
    where: str  # "document 3" / "document 2, item 7"
    obj: Resource


def read_text(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    try:
        with open(filename, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise LoadError(f"cannot read {filename}: {exc.strerror or exc}") from None


def parse(text: str, source: str) -> list[Loaded]:
    """The resources in ``text`` (YAML or JSON), lists flattened, empty documents skipped."""
    docs: list[Any]
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
            docs = [data]
        except json.JSONDecodeError:
            docs = _yaml_docs(text, source)
    else:
        docs = _yaml_docs(text, source)
    out: list[Loaded] = []
    for i, doc in enumerate(docs, 1):
        if doc is None:
            continue
        items = doc if isinstance(doc, list) else _list_items(doc)
        if items is None:
            out.append(Loaded(f"document {i}", doc))
        else:
            out.extend(Loaded(f"document {i}, item {j}", it) for j, it in enumerate(items, 1))
    return out


def _yaml_docs(text: str, source: str) -> list[Any]:
    import yaml

    try:
        return list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    except yaml.YAMLError as exc:
        raise LoadError(f"cannot parse {source}: {exc}") from None


def _list_items(doc: Any) -> list[Any] | None:
    if not isinstance(doc, dict):
        return None
    kind = doc.get("kind")
    if kind == "List" or (
        isinstance(kind, str) and kind.endswith("List") and kind[:-4] in kinds.KINDS
    ):
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise LoadError(f"{kind}: items must be a list, got {items!r}")
        return items
    return None


def resolve_namespace(
    obj: Resource, *, namespace: str | None, all_namespaces: bool = False
) -> None:
    """Apply calicoctl's namespace rules to one resource in place (ValidationError on a clash)."""
    kind = kinds.lookup(str(obj.get("kind", "")))
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        return  # validation reports it
    res_ns = meta.get("namespace") or ""
    what = validation.describe(obj)
    if kind.namespaced:
        if res_ns and namespace and res_ns != namespace:
            raise validation.ValidationError(
                f"{what}: metadata.namespace: {res_ns!r} does not match --namespace {namespace!r}"
            )
        if not res_ns and not all_namespaces:
            meta["namespace"] = namespace or "default"
    elif res_ns:
        raise validation.ValidationError(
            f"{what}: metadata.namespace: {kind.name} is not namespaced, got {res_ns!r}"
        )


def load(
    filename: str,
    *,
    namespace: str | None = None,
    full: bool = True,
) -> list[Resource]:
    """Read, check and normalize every resource in ``filename``; LoadError if any is bad.

    ``full`` validates each resource completely (create/apply/replace); otherwise only its kind,
    name and namespace are checked (delete/get by file).
    """
    source = "stdin" if filename == "-" else filename
    if filename != "-" and os.path.isdir(filename):
        loaded = [
            Loaded(f"{name}, {item.where}", item.obj)
            for name in sorted(os.listdir(filename))
            if name.endswith((".yaml", ".yml", ".json"))
            for item in parse(read_text(os.path.join(filename, name)), name)
        ]
    else:
        loaded = parse(read_text(filename), source)
    if not loaded:
        raise LoadError(f"No resources specified in file {source}")
    good: list[Resource] = []
    bad: list[str] = []
    for item in loaded:
        try:
            good.append(_check(item.obj, namespace=namespace, full=full))
        except (validation.ValidationError, ValueError) as exc:
            bad.append(f"{item.where}: {exc}")
    if bad:
        raise LoadError(
            f"{len(bad)} of {len(loaded)} resource(s) in {source} are invalid; nothing was "
            "written:\n  " + "\n  ".join(bad)
        )
    return good


def _check(obj: Any, *, namespace: str | None, full: bool) -> Resource:
    if not isinstance(obj, dict):
        raise validation.ValidationError(f"resource: must be a mapping, got {obj!r}")
    if "kind" not in obj:
        raise validation.ValidationError(f"{validation.describe(obj)}: kind: required")
    try:
        kind = kinds.lookup(str(obj["kind"]))
    except ValueError:
        raise validation.ValidationError(
            f"{validation.describe(obj)}: kind: unknown kind {obj['kind']!r}"
        ) from None
    obj = dict(obj)
    if isinstance(obj.get("metadata"), dict):
        obj["metadata"] = dict(obj["metadata"])
    resolve_namespace(obj, namespace=namespace)
    if full:
        checked = validation.validate(obj)
        if checked["kind"] == "StagedKubernetesNetworkPolicy":
            check_staged_kubernetes(checked)
        return checked
    if obj.get("kind") != kind.name:
        raise validation.ValidationError(
            f"{validation.describe(obj)}: kind: invalid kind {obj['kind']!r} (want {kind.name!r})"
        )
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not name or not isinstance(name, str):
        raise validation.ValidationError(f"{validation.describe(obj)}: metadata.name: required")
    result: Resource = obj
    return result


def check_staged_kubernetes(obj: Resource) -> None:
    """A StagedKubernetesNetworkPolicy is rejected as its Kubernetes NetworkPolicy would be: it
    must convert (strictly) as the controllers convert one."""
    from calico.k8s import conversion  # lazy: only this kind needs it

    spec = {k: v for k, v in obj["spec"].items() if k != "stagedAction"}
    if obj["spec"]["stagedAction"] == "Delete":
        return
    meta = obj["metadata"]
    np = {"metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "spec": spec}
    try:
        conversion.network_policy_to_calico(np)
    except conversion.ConversionError as exc:
        what = validation.describe(obj)
        reason = str(exc).removesuffix(" (rule dropped)")
        raise validation.ValidationError(f"{what}: {reason}", resource=what) from None
