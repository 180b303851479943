"""Memory quantities, read the way Kubernetes reads them.

``4G`` is 4 * 1000**3 bytes and ``4Gi`` is 4 * 1024**3, exactly as in a pod's resources,
so that a size means the same on the local backend and on Kubernetes.
"""

import re

_UNITS = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_MEMORY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<unit>k|M|G|T|Ki|Mi|Gi|Ti)?$")


def parse_memory(value):
    """Return the number of bytes in ``value`` (an int, or a string such as ``512Mi``).

    Raises ValueError naming the value and the units allowed.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a memory size")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{value!r} is not a positive number of bytes")
        return value
    match = _MEMORY.match(str(value).strip())
    if not match:
        raise ValueError(
            f"{value!r} is not a memory size; use a number with an optional unit "
            "k, M, G, T, Ki, Mi, Gi or Ti, e.g. 512Mi or 4G"
        )
    number = float(match["number"])
    return int(number * _UNITS[match["unit"] or ""])

