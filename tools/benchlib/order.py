"""The order of the runners in each round: balanced for carry-over.

A run can leave the machine in a state that slows the next one (on a VM
with free page reporting, for instance, what the previous run freed, and
when).  A plain rotation keeps the cyclic order, so a runner always
follows the same other runner and inherits its after-effects in every
round.  A Williams design (a balanced Latin square) gives every runner
each position once and makes it follow every other runner equally often
over one cycle of rounds.
"""


def williams_rows(n):
    """Rows of a Williams design for ``n`` items (``n`` rows if even,
    ``2n`` if odd: each row's mirror image is added)."""
    if n < 1:
        return []
    first, low, high = [0], 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(x + i) % n for x in first] for i in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows


def round_order(items, rnd):
    """``items`` in the order of round ``rnd`` (0-based)."""
    items = list(items)
    rows = williams_rows(len(items))
    if not rows:
        return items
    return [items[i] for i in rows[rnd % len(rows)]]
