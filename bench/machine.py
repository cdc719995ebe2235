"""What the benches say about the machine they ran on."""

import time


def cpu_busy_fraction(seconds=1.0):
    """Share of all cores busy over ``seconds`` while this process sleeps (Linux /proc/stat),
    or None where that file does not exist."""

    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)
