"""The docs point at code that exists: the equation tables' functions, the step code, the commands,
the links, the example; and imports point the way docs/developers.md says."""

import ast
import importlib
import importlib.util
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "rssm_np")


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as file:
        return file.read()


def pages():
    """README.md and every docs/*.md, relative to the repository."""
    return ["README.md"] + [os.path.join("docs", name) for name in sorted(os.listdir(os.path.join(ROOT, "docs")))
                            if name.endswith(".md")]


def code_blocks(text, language=""):
    return re.findall(r"```" + language + r"\n(.*?)```", text, re.S)


# | what | `rssm_np/path/module.py` | `function`, `other` |
EQUATION_ROW = re.compile(r"^\|.*\| `rssm_np/([\w/]+)\.py` \| (.*) \|$")


def test_every_function_in_an_equation_table_exists():
    rows = [(page, match) for page in pages() for line in read(page).splitlines()
            if (match := EQUATION_ROW.match(line))]
    assert len([page for page, _ in rows if page == "README.md"]) >= 15
    for page, match in rows:
        module_path, cell = match.groups()
        names = re.findall(r"`(\w+)`", cell)
        assert names, match.group(0)
        module = importlib.import_module("rssm_np." + module_path.replace("/", "."))
        for name in names:
            assert callable(getattr(module, name, None)), \
                f"{page} names rssm_np/{module_path}.py:{name}, which does not exist"


def normalized_lines(code):
    """Code lines without comments or spacing, for comparing the README's code with the source."""
    lines = []
    for line in code.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line:
            lines.append(re.sub(r"\s+", " ", line))
    return lines


def test_the_step_code_in_the_readme_is_the_code_of_model_py():
    step_code = next(block for block in code_blocks(read("README.md"), "python") if "def img_step" in block)
    source = set(normalized_lines(read(os.path.join("rssm_np", "model.py"))))
    for line in normalized_lines(step_code):
        assert line in source, f"the README's step code says {line!r}, which rssm_np/model.py does not"


def test_the_two_commands_are_there():
    text = read("README.md")
    assert "pip install -r requirements.txt && python demo.py" in text
    assert "python -m pytest" in text


def test_every_command_the_docs_name_exists():
    for page in pages():
        text = read(page)
        for module in set(re.findall(r"python -m (rssm_np(?:\.\w+)+)", text)):
            assert importlib.util.find_spec(module) is not None, f"{page} runs `python -m {module}`, which is missing"
        for script in set(re.findall(r"python ((?:tools/)?\w+\.py)", text)):
            assert os.path.exists(os.path.join(ROOT, script)), f"{page} runs `python {script}`, which is missing"


def test_every_local_link_and_picture_exists():
    for page in pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", read(page)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target.split("#")[0]))
            if "docs/results/" in path.replace(os.sep, "/"):
                continue                 # results files: tests/test_docs.py checks those
            assert os.path.exists(path), f"{page} links {target}, which does not exist"


def test_the_batches_example_runs():
    import rssm_np.training as training
    block = read(os.path.join("docs", "developers.md")).split("## Another world")[1]
    block = block.split("```python\n")[1].split("```")[0]
    assert len(block.strip().splitlines()) == 5
    # One step of the real example (the page asks for 500), on a batch of 2 sequences of 4 frames.
    code = block.replace("steps=500", "steps=1").replace("make_dataset(16, 32,", "make_dataset(2, 4,")
    namespace = {}
    exec(code, namespace)
    assert namespace["state"]["step"] == 1 and training.train is namespace["train"]


# --- which way imports point (docs/developers.md) ----------------------------------------------

def modules():
    """name -> path of every module of the package: "model", "utils.files", "lab.compare"."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        parts = os.path.relpath(folder, PACKAGE).split(os.sep)
        parts = [] if parts == ["."] else parts
        if "__pycache__" in parts:
            continue
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                found[".".join(parts + [name[:-3]])] = os.path.join(folder, name)
    return found


def package_imports():
    """module -> the modules of the package it imports (at the top or inside a function)."""
    known = modules()

    def resolve(parts, names):
        """`from <parts> import <names>`: the module parts names, or the modules among parts.names."""
        found = {".".join(parts)} if ".".join(parts) in known else set()
        return found | {".".join(parts + [name]) for name in names if ".".join(parts + [name]) in known}

    edges = {}
    for module, path in known.items():
        here = module.split(".")[:-1]                       # the package the module sits in
        found = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            names = [alias.name for alias in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            if isinstance(node, ast.ImportFrom) and node.level:                 # from ..model import x
                base = here[:len(here) - (node.level - 1)]
                found |= resolve(base + (node.module.split(".") if node.module else []), names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rssm_np":
                found |= resolve(node.module.split(".")[1:], names)          # from rssm_np.lab import x
            elif isinstance(node, ast.Import):
                for name in names:
                    if name.startswith("rssm_np."):
                        found |= resolve(name.split(".")[1:], [])
        edges[module] = found - {module}
    return edges


def layer(module):
    return module.split(".")[0] if module.split(".")[0] in ("utils", "lab") else "core"


def test_imports_point_from_the_lab_to_the_core_and_there_is_no_cycle():
    edges = package_imports()
    assert "model" in edges and "utils.files" in edges and "lab.compare" in edges
    assert "model" in edges["lab.evaluate"] and "utils.files" in edges["checkpoint"]   # the walk sees imports
    allowed = {"core": {"core", "utils"}, "utils": {"utils"}, "lab": {"lab", "core", "utils"}}
    for module, imported in edges.items():
        for other in imported:
            assert layer(other) in allowed[layer(module)], \
                f"rssm_np/{module.replace('.', '/')}.py ({layer(module)}) imports {other} ({layer(other)})"
    done, active = set(), []

    def visit(module):
        assert module not in active, f"import cycle: {' -> '.join(active + [module])}"
        if module in done:
            return
        active.append(module)
        for other in sorted(edges.get(module, ())):
            visit(other)
        active.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
