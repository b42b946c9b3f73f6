"""Pass/fail bookkeeping shared by the CLI test scripts (compare_cli, noise_report_test,
along_report_test, experiments_script_test, train_cli, fault_injection): every check() is counted,
a failing one keeps its name and the tail of its detail, and finish() prints the failures and a
summary line and exits 1 if any failed."""
import json
import sys

failures = []
passed = 0


def check(name, cond, detail="", keep=2000):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(f"{name}: {str(detail)[-keep:]}")


def write(path, data, mode="w"):
    """Writes text or bytes as given, any other value as indented JSON; returns the path."""
    with open(path, mode) as f:
        f.write(data if isinstance(data, (str, bytes)) else json.dumps(data, indent=1))
    return path


def finish(label=""):
    for f in failures:
        print("FAIL", f)
    print(f"{label}{passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)
