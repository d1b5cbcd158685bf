"""calico.selector: Calico's label-selector language (parse, canonicalise, evaluate, index hints).

    from calico import selector
    sel = selector.parse("role == 'db' && env in {'prod', 'dev'}")   # raises selector.SelectorError
    sel.evaluate({"role": "db", "env": "prod"})                      # -> True
    str(sel)                       # canonical text: 'role == "db" && env in {"dev", "prod"}'
    sel.label_restrictions()       # {'role': frozenset({'db'}), 'env': frozenset({'dev', 'prod'})}
    sel.uses_global()              # False
    selector.parse("") == selector.ALL

Pure: no I/O, stdlib only. Modules: ``nodes`` (AST, normalisation, canonical rendering), ``parser``
(text -> AST, positioned errors), ``compiler`` (AST -> matcher function), ``restrictions`` (AST ->
required labels), ``selectors`` (the Selector value type and the cached ``parse``).
See docs/design/selector.md.
"""

from calico.selector.errors import SelectorError
from calico.selector.nodes import NAMESPACE_LABEL
from calico.selector.selectors import ALL, Selector, from_node, parse

__all__ = ["ALL", "NAMESPACE_LABEL", "Selector", "SelectorError", "from_node", "parse"]
