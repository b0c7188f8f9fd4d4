"""Holds MEGABYTES of touched memory and burns one core until killed (a unit in CLI tests)."""

import sys

data = bytearray(int(sys.argv[1]) * 1024 * 1024)
for index in range(0, len(data), 4096):
    data[index] = 1
print("holding", len(data), flush=True)
while True:
    pass
