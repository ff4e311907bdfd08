#!/usr/bin/env python3
"""The statistics scripts/reproduce_tables.py puts in the results tables, against values worked
out by hand: the 95 % t-interval, the paired verdicts, and the time-to-target interpolation of
table 3. Run by ctest ("scripts: reproduce_tables statistics")."""
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import reproduce_tables as rt  # noqa: E402


class Statistics(unittest.TestCase):
    def test_interval_of_three_values(self):
        # mean 2, sample sd 1, t(0.975, 2) = 4.303: half-width 4.303 / sqrt(3) = 2.4843.
        s = rt.interval([1.0, 2.0, 3.0])
        self.assertAlmostEqual(s["mean"], 2.0)
        self.assertAlmostEqual(s["ci95"][0], 2.0 - 4.303 / math.sqrt(3), places=6)
        self.assertAlmostEqual(s["ci95"][1], 2.0 + 4.303 / math.sqrt(3), places=6)
        self.assertEqual(rt.show(s), "2.00 ± 2.48")

    def test_interval_edges(self):
        self.assertIsNone(rt.interval([]))
        self.assertIsNone(rt.interval([None, float("nan")]))
        one = rt.interval([5.0])
        self.assertIsNone(one["ci95"])
        self.assertEqual(rt.show(one, 1), "5.0")
        # Degrees of freedom between table rows take the next smaller entry (wider interval).
        self.assertEqual(rt.t975(17), rt.T975[15])

    def test_excludes(self):
        self.assertTrue(rt.excludes(rt.interval([0.8, 0.85, 0.82]), 1.0))
        self.assertFalse(rt.excludes(rt.interval([0.8, 1.2, 0.9]), 1.0))
        self.assertFalse(rt.excludes(rt.interval([0.8]), 1.0))  # one value proves nothing

    def test_percent(self):
        self.assertEqual(rt.show(rt.interval([0.25]), 0, pct=True), "25 %")


class TimeToQuality(unittest.TestCase):
    curve = [(10.0, 400.0), (20.0, 100.0), (30.0, 50.0)]

    def test_time_to_target_interpolates_in_log_perplexity(self):
        # 200 is halfway from 400 to 100 in log space: halfway from 10 s to 20 s.
        self.assertAlmostEqual(rt.Report.time_to(self.curve, 200.0), 15.0)
        self.assertAlmostEqual(rt.Report.time_to(self.curve, 400.0), 10.0)
        self.assertIsNone(rt.Report.time_to(self.curve, 10.0))  # never reached

    def test_perplexity_at_a_time(self):
        self.assertAlmostEqual(rt.Report.ppl_at(self.curve, 25.0), math.sqrt(100.0 * 50.0))
        self.assertAlmostEqual(rt.Report.ppl_at(self.curve, 5.0), 400.0)
        self.assertIsNone(rt.Report.ppl_at(self.curve, 31.0))

    def test_training_clock_leaves_evaluations_out(self):
        import json
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            records = [{"step": 10, "loss": 3.0, "step_s": 0.5}, {"step": 10, "valid_ppl": 90.0},
                       {"step": 20, "loss": 2.5, "step_s": 0.25}, {"step": 20, "valid_ppl": 60.0},
                       {"step": 20, "valid_ppl": 55.0, "model_step": 10}]
            with open(os.path.join(d, "metrics.jsonl"), "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))
            # 10 steps x 0.5 s, then 10 x 0.25 s; the final record of a kept model is not a point.
            self.assertEqual(rt.Report.time_curve(d), [(5.0, 90.0), (7.5, 60.0)])


if __name__ == "__main__":
    unittest.main()
