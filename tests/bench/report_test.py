"""bench/report.py on hand-made rows: the memory floor of each row (bytes counted here from the
shape, independently of bench/flops.py), the share of the larger bound, and the token sweep's
formats. Usage: report_test.py BENCH_DIR."""
import json
import pathlib
import subprocess
import sys
import tempfile
import unittest

BENCH = pathlib.Path(sys.argv.pop(1)).resolve()

# qwen3-30b-a3b down: E = 128, k = 8, K = 768, N = 2048, r = 16; the input is grouped (T k rows).
SHAPE = dict(shape="qwen3-30b-a3b", proj="down", rank=16, experts=128, top_k=8, in_features=768,
             out_features=2048)
COPY_TBPS, DENSE_TFLOPS = 3.0, 800.0


def moejit_row(tokens, weights, f_ms, fb_ms):
    return dict(SHAPE, device="Test GPU", date="2026-11-25", tokens=tokens, weights=weights,
                moejit_f_ms=f_ms, moejit_fb_ms=fb_ms, config="m128n256k64_w8x1_s4_tma", tuned=True)


def composition_row(tokens, weights):
    return dict(SHAPE, device="Test GPU", date="2026-11-25", tokens=tokens, weights=weights,
                composition_f_ms=1.0, composition_fb_ms=2.0, dense_tflops=DENSE_TFLOPS,
                copy_tbps=COPY_TBPS)


def forward_bytes(tokens, weight_bytes_per_value):
    rows = tokens * 8
    x = rows * 768 * 2
    w = 128 * 768 * 2048 * weight_bytes_per_value
    lora = 128 * 16 * (768 + 2048) * 2
    y = rows * 2048 * 2
    return x + w + lora + y


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        out = pathlib.Path(cls.dir.name)
        moejit = [moejit_row(8192, "bf16", 0.45, 1.05), moejit_row(8192, "nf4", 0.65, 1.6),
                  moejit_row(1024, "bf16", 0.18, 0.42), moejit_row(1024, "nf4", 0.09, 0.3),
                  moejit_row(8192, "int8", 0.63, 1.5)]
        composition = [composition_row(t, w) for t in (1024, 8192) for w in ("bf16", "nf4")]
        (out / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in moejit))
        (out / "c.jsonl").write_text("not json\n" + "".join(json.dumps(r) + "\n" for r in composition))
        cls.stdout = subprocess.run(
            [sys.executable, str(BENCH / "report.py"), "--moejit", str(out / "m.jsonl"),
             "--composition", str(out / "c.jsonl"), "--out-dir", str(out)],
            check=True, capture_output=True, text=True).stdout
        cls.rows = {(r["tokens"], r["weights"]): r
                    for r in json.loads((out / "2026-11-25-test-gpu.json").read_text())}
        cls.markdown = (out / "2026-11-25-test-gpu.md").read_text()

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_memory_floor_counts_each_tensor_once(self):
        bf16 = self.rows[(8192, "bf16")]
        expected_ms = forward_bytes(8192, 2) / (COPY_TBPS * 1e12) * 1e3
        self.assertAlmostEqual(bf16["memory_f_ms"], expected_ms, places=9)
        # dX moves as much as the forward again, dA and dB re-read x and dy: more than twice.
        self.assertGreater(bf16["memory_fb_ms"], 2 * bf16["memory_f_ms"])
        self.assertEqual(bf16["copy_tbps"], COPY_TBPS)

    def test_quantized_weights_lower_the_floor_by_their_bytes(self):
        bf16, nf4 = self.rows[(8192, "bf16")], self.rows[(8192, "nf4")]
        saved_ms = (forward_bytes(8192, 2) - forward_bytes(8192, 0.5 + 4 / 64)) / (COPY_TBPS * 1e9)
        self.assertAlmostEqual(bf16["memory_f_ms"] - nf4["memory_f_ms"], saved_ms, places=9)
        self.assertLess(self.rows[(8192, "int8")]["memory_f_ms"], bf16["memory_f_ms"])

    def test_rows_are_measured_against_the_larger_bound(self):
        small = self.rows[(1024, "bf16")]  # 1,024 tokens: the weights' bytes dominate
        self.assertGreater(small["memory_f_ms"], small["roofline_f_ms"])
        share = round(100 * small["memory_f_ms"] / small["moejit_f_ms"])
        line = next(l for l in self.markdown.splitlines() if l.startswith("| down | bf16 | 1024 |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        self.assertEqual(cells[11].split(" / ")[0], f"{share}%")

    def test_sweep_lists_every_format_measured_at_several_token_counts(self):
        sweep = self.markdown[self.markdown.index("Token sweep, qwen3-30b-a3b:"):]
        lines = [l for l in sweep.splitlines() if l.startswith("| down |")]
        self.assertEqual([l.split("|")[2].strip() + "@" + l.split("|")[3].strip() for l in lines],
                         ["bf16@1024", "bf16@8192", "nf4@1024", "nf4@8192"])
        nf4_small = next(l for l in lines if "| nf4 | 1024 |" in l)
        self.assertIn("0.50x", nf4_small)  # 0.09 / 0.18 ms: its time over bf16's
        self.assertNotIn("int8", sweep)  # measured at one token count only
        self.assertIn("device copy rate (bytes read + written): 3.00 TB/s", self.markdown)


if __name__ == "__main__":
    unittest.main()
