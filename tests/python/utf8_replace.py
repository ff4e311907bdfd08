# For each argument (hex bytes), prints the hex of bytes.decode("utf-8", "replace") re-encoded:
# the independent expectation for tok::utf8_replace_invalid.
import sys

for arg in sys.argv[1:]:
    data = b"" if arg == "-" else bytes.fromhex(arg)
    print(data.decode("utf-8", "replace").encode("utf-8").hex())
