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
