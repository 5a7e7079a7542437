#!/usr/bin/python3
"""Renders chat templates with python3-jinja2 as Hugging Face transformers does (a sandboxed environment with
trim_blocks and lstrip_blocks, raise_exception). Reads a JSON list of cases
{"template", "bos_token", "eos_token", "messages", "add_generation_prompt"} from the file named by argv[1] and prints
a JSON list: the rendered string, or {"error": message} where the template raised."""
import json
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise TemplateError(message)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    out = []
    for case in cases:
        try:
            out.append(env.from_string(case["template"]).render(
                messages=case["messages"], bos_token=case["bos_token"], eos_token=case["eos_token"],
                add_generation_prompt=case["add_generation_prompt"]))
        except TemplateError as e:
            out.append({"error": str(e)})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
