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
