"""The README's equation map points at functions that exist, and its commands are the real ones."""

import importlib
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as file:
        return file.read()


def test_every_function_in_the_equation_table_exists():
    rows = [line for line in readme().splitlines() if re.match(r"\|.*\| `rssm_np/\w+\.py` \|", line)]
    assert len(rows) >= 15
    for row in rows:
        module_path = re.search(r"`rssm_np/(\w+)\.py`", row).group(1)
        functions = re.findall(r"`(\w+)`", row.rsplit("|", 2)[-2])
        assert functions, row
        module = importlib.import_module(f"rssm_np.{module_path}")
        for name in functions:
            assert callable(getattr(module, name, None)), f"README names rssm_np/{module_path}.py:{name}, which does not exist"


def test_the_two_commands_are_there():
    text = readme()
    assert "pip install -r requirements.txt && python demo.py" in text
    assert "python -m pytest" in text


def test_the_batches_example_runs():
    import rssm_np.training as training
    block = readme().split("Another world needs only a function")[1].split("```python\n")[1].split("```")[0]
    assert len(block.strip().splitlines()) == 5
    # One step of the real example (the README asks for 500), on a batch of 2 sequences of 4 frames.
    code = block.replace("steps=500", "steps=1").replace("make_dataset(16, 32,", "make_dataset(2, 4,")
    namespace = {}
    exec(code, namespace)
    assert namespace["state"]["step"] == 1 and training.train is namespace["train"]


LAYERS = {                      # README "How the package is layered": imports point only down
    "world": 0, "validate": 0, "trees": 0,
    "layers": 1, "distributions": 1, "model": 1, "fused": 1, "speed": 1, "adam": 1, "config": 1,
    "training": 2, "evaluate": 2, "beliefs": 2, "futures": 2, "checkpoint": 2, "runs": 2,
    "plots": 3, "compare": 3, "bench": 3, "plan": 3, "play": 3, "planning": 2, "game": 2, "seeds": 3,
}


def package_imports():
    """module -> the rssm_np modules it imports (at the top or inside a function)."""
    import ast
    folder = os.path.join(ROOT, "rssm_np")
    edges = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py") or name == "__init__.py":
            continue
        module = name[:-3]
        tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rssm_np."):
                found.add(node.module.split(".")[1])
        edges[module] = found - {module}
    return edges


def test_layers_point_one_way_and_there_is_no_import_cycle():
    edges = package_imports()
    for module, imported in edges.items():
        assert module in LAYERS, f"rssm_np/{module}.py has no layer in the README's list"
        for other in imported:
            assert LAYERS[other] <= LAYERS[module], f"{module} (layer {LAYERS[module]}) imports {other} (layer {LAYERS[other]})"
    done, active = set(), []

    def visit(module):
        assert module not in active, f"import cycle: {' -> '.join(active + [module])}"
        if module in done:
            return
        active.append(module)
        for other in edges.get(module, ()):
            visit(other)
        active.pop()
        done.add(module)

    for module in edges:
        visit(module)
