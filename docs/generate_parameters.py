"""Write docs/reference/parameters.rst from the declarations in rfm_recsys/config.py.

    python docs/generate_parameters.py

tests/test_config.py fails when the committed file differs from what this writes.
"""

from pathlib import Path

from rfm_recsys.config import parameter_reference

if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "reference" / "parameters.rst"
    out.write_text(parameter_reference())
    print(f"wrote {out}")
