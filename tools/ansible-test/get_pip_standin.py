"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads from a host these
machines cannot reach. ansible-test runs it inside each fresh sanity virtualenv with pip's install
arguments; here the interpreter's own ensurepip provides pip, and pip then installs those
arguments from the package index like the real bootstrap would."""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
