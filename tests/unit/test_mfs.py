"""Parsing mfscli's plain output (lines captured from a 3.0.117 master in the lab)."""

from installer import mfs

INFO = """master info:|master version|3.0.117
master info:|total space|8455716864
master info:|avail space|7791845376
master info:|chunks|0
"""
SERVERS = """chunk servers:|10.74.0.11|9422|2|-|3.0.117|0|maintenance_off|5|331935744|4227858432|-|0|0|0
chunk servers:|10.74.0.12|9422|1|-|3.0.117|0|maintenance_on|7|331935744|4227858432|-|0|0|0
"""
LOGGERS = """metadata backup loggers:|10.74.0.12|3.0.117
metadata backup loggers:|10.74.0.13|3.0.117
"""
MATRIX = """regular chunks matrix:|chunkclass missing:|0
regular chunks matrix:|chunkclass endangered:|2
regular chunks matrix:|chunkclass undergoal:|3
regular chunks matrix:|chunkclass stable:|40
"""


def test_parse_health():
    health = mfs.parse_health("10.74.0.11", INFO, SERVERS, LOGGERS, MATRIX)
    assert health.version == "3.0.117" and health.total_space == 8455716864 and health.avail_space == 7791845376
    assert [(c.ip, c.chunks, c.maintenance) for c in health.chunkservers] == [("10.74.0.11", 5, False),
                                                                            ("10.74.0.12", 7, True)]
    assert health.metaloggers == ["10.74.0.12", "10.74.0.13"]
    assert health.chunks == {"missing": 0, "endangered": 2, "undergoal": 3, "stable": 40}


def test_unreachable_master_is_reported_not_raised():
    health = mfs.health("127.0.0.9")
    assert not health.reachable and "does not answer" in health.error


# captured from the lab's 3.0.117 master (-SIM, -SIL with chunks, -SIL of an empty filesystem)
METADATA_SERVERS = ("metadata servers:|10.71.0.11|3.0.117|-|1796419815.856763|21|not available|347107328|"
                    "all:0.4963457% sys:0.2799895% user:0.2163562%|-|-|-|E2EA7ECB9EBF22D7\n")
LOOPS = """chunk loop|start:|1796419901
chunk loop|end:|1796419961
chunk loop|deletions|invalid:|0/0
chunk loop|replications|under goal:|0/0
chunk loop|replications|rebalance:|0
check loop: no data
"""
NO_LOOP = "chunk loop|no data\ncheck loop: no data\n"


def _answers(monkeypatch, **by_section):
    monkeypatch.setattr(mfs, "mfscli", lambda master, section, *extra, timeout=10: by_section[section])


def test_the_masters_clock_and_its_last_chunk_loop(monkeypatch):
    _answers(monkeypatch, IM=METADATA_SERVERS, IL=LOOPS, IN=INFO)
    assert mfs.master_time("10.71.0.11") == 1796419815.856763
    assert mfs.chunk_loop("10.71.0.11") == (1796419901, 1796419961)
    assert mfs.chunk_count("10.71.0.11") == 0


def test_no_chunk_loop_reported_reads_as_zero(monkeypatch):
    _answers(monkeypatch, IL=NO_LOOP)
    assert mfs.chunk_loop("10.71.0.11") == (0, 0)
