"""Nested dicts and lists of arrays (the params, their shapes): walk them in one fixed order.

A node is a dict or a list; anything else (an array, a traced array, a shape tuple) is a leaf.
Depth first, dicts in insertion order: the order the Adam moments and the checkpoint files use.
"""


def tree_items(tree, prefix=""):
    """(path, leaf) pairs: {'gru': {'w': A}, 'encoder': [{'w': B}]} -> [('gru/w', A), ('encoder/0/w', B)]."""
    if isinstance(tree, dict):
        children = tree.items()
    elif isinstance(tree, list):
        children = enumerate(tree)
    else:
        return [(prefix.rstrip("/"), tree)]
    return [item for key, child in children for item in tree_items(child, f"{prefix}{key}/")]


def tree_leaves(tree):
    """The leaves of a nested dict/list, in tree_items order: a flat list."""
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in tree_leaves(tree[key])]
    if isinstance(tree, list):
        return [leaf for item in tree for leaf in tree_leaves(item)]
    return [tree]


def tree_rebuild(template, leaves):
    """The inverse of tree_leaves: `template`'s structure holding `leaves` (arrays or traced ones)."""
    position = iter(range(len(leaves)))

    def build(node):
        if isinstance(node, dict):
            return {key: build(node[key]) for key in node}
        if isinstance(node, list):
            return [build(item) for item in node]
        return leaves[next(position)]

    return build(template)
