"""bench/report.py on hand-made rows: each row's memory floors (bytes counted here op by op from
the shape, independently of bench/flops.py), the share of the larger bound, and the token sweep's
formats; and bench/readme_tables.py on its JSON. Usage: report_test.py BENCH_DIR."""
import json
import pathlib
import subprocess
import sys
import tempfile
import unittest

BENCH = pathlib.Path(sys.argv.pop(1)).resolve()

# qwen3-30b-a3b: E = 128, k = 8, hidden 2048, intermediate 768, r = 16. down reads a grouped x of
# T k rows (K = 768, N = 2048); gate_up a gathered x of T rows (K = 2048, N = 1536).
E, TOP_K, R = 128, 8, 16
PROJ = {"down": dict(in_features=768, out_features=2048),
        "gate_up": dict(in_features=2048, out_features=1536)}
COPY_TBPS, DENSE_TFLOPS = 3.0, 800.0


def moejit_row(proj, tokens, weights, f_ms, fb_ms):
    return dict(PROJ[proj], shape="qwen3-30b-a3b", proj=proj, rank=R, experts=E, top_k=TOP_K,
                device="Test GPU", date="2026-11-25", tokens=tokens, weights=weights,
                moejit_f_ms=f_ms, moejit_fb_ms=fb_ms, config="m128n256k64_w8x1_s4_tma",
                tuned=True)


def composition_row(proj, tokens, weights):
    return dict(PROJ[proj], shape="qwen3-30b-a3b", proj=proj, rank=R, experts=E, top_k=TOP_K,
                device="Test GPU", date="2026-11-25", tokens=tokens, weights=weights,
                composition_f_ms=1.0, composition_fb_ms=2.0, dense_tflops=DENSE_TFLOPS,
                copy_tbps=COPY_TBPS)


def weight_bytes(weights, k, n):
    values = E * k * n
    return {"bf16": 2 * values,
            "nf4": values // 2 + values // 64 * 4,  # fp32 absmax per 64 values
            "nf4-dq": values // 2 + values // 64 + values // (64 * 256) * 4,
            "int8": values + E * min(k, n) * 4}[weights]  # fp32 per row of the longer side


def step_bytes(proj, tokens, weights):
    """(forward, forward + backward) bytes: every op reads its inputs once and writes its outputs
    once; x A^T and dy B in fp32."""
    k, n = PROJ[proj]["in_features"], PROJ[proj]["out_features"]
    rows = tokens * TOP_K
    x_rows = tokens if proj == "gate_up" else rows
    w = weight_bytes(weights, k, n)
    a, b = E * R * k * 2, E * R * n * 2
    forward = x_rows * k * 2 + w + a + b + rows * n * 2  # x, W, A, B in; y out
    saving_forward = forward + rows * R * 4  # and x A^T out
    grad_x = rows * n * 2 + w + a + b + x_rows * k * 2 + rows * R * 4  # dy, W, A, B; dX, dy B
    grad_a = x_rows * k * 2 + rows * R * 4 + a  # x, dy B; dA
    grad_b = rows * n * 2 + rows * R * 4 + b  # dy, x A^T; dB
    return forward, saving_forward + grad_x + grad_a + grad_b


def ms(nbytes):
    return nbytes / (COPY_TBPS * 1e12) * 1e3


class ReportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        out = pathlib.Path(cls.dir.name)
        moejit = [moejit_row("down", 8192, "bf16", 0.45, 1.05),
                  moejit_row("down", 8192, "nf4", 0.65, 1.6),
                  moejit_row("down", 8192, "nf4-dq", 0.66, 1.62),
                  moejit_row("down", 8192, "int8", 0.63, 1.5),
                  moejit_row("down", 1024, "bf16", 0.18, 0.42),
                  moejit_row("down", 1024, "nf4", 0.09, 0.3),
                  moejit_row("gate_up", 8192, "bf16", 0.8, 1.85),
                  moejit_row("gate_up", 8192, "nf4", 1.2, 2.8),
                  moejit_row("gate_up", 8192, "nf4-dq", 1.25, 2.85),
                  moejit_row("gate_up", 8192, "int8", 1.1, 2.6)]
        composition = [composition_row("down", t, w) for t in (1024, 8192) for w in ("bf16", "nf4")]
        (out / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in moejit))
        (out / "c.jsonl").write_text("not json\n" + "".join(json.dumps(r) + "\n" for r in composition))
        done = subprocess.run(
            [sys.executable, "-B", str(BENCH / "report.py"), "--moejit", str(out / "m.jsonl"),
             "--composition", str(out / "c.jsonl"), "--out-dir", str(out)],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"report.py failed:\n{done.stderr}")
        cls.rows = {(r["proj"], r["tokens"], r["weights"]): r
                    for r in json.loads((out / "2026-11-25-test-gpu.json").read_text())}
        cls.markdown = (out / "2026-11-25-test-gpu.md").read_text()
        done = subprocess.run([sys.executable, "-B", str(BENCH / "readme_tables.py"),
                               str(out / "2026-11-25-test-gpu.json")], capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"readme_tables.py failed:\n{done.stderr}")
        cls.readme = done.stdout

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def cells(self, first_cells, header_start):
        """The cells of the markdown row that starts with first_cells, by the names of the header
        row that starts with header_start."""
        lines = self.markdown.splitlines()
        header = next(l for l in lines if l.startswith(header_start))
        line = next(l for l in lines if l.startswith(first_cells))
        split = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]
        return dict(zip(split(header), split(line)))

    def test_memory_floors_count_each_op_s_bytes(self):
        for proj, tokens, weights in self.rows:
            with self.subTest(proj=proj, tokens=tokens, weights=weights):
                row = self.rows[(proj, tokens, weights)]
                f, fb = step_bytes(proj, tokens, weights)
                self.assertAlmostEqual(row["memory_f_ms"], ms(f), places=9)
                self.assertAlmostEqual(row["memory_fb_ms"], ms(fb), places=9)
                self.assertEqual(row["copy_tbps"], COPY_TBPS)

    def test_bound_is_the_larger_of_roofline_and_floor(self):
        # 1,024 tokens of down: the weights' bytes dominate; gate_up at 8,192: the FLOPs.
        small, large = self.rows[("down", 1024, "bf16")], self.rows[("gate_up", 8192, "bf16")]
        self.assertGreater(small["memory_f_ms"], small["roofline_f_ms"])
        self.assertGreater(large["roofline_fb_ms"], large["memory_fb_ms"])
        for row, first in ((small, "| down | bf16 | 1024 |"),
                           (large, "| qwen3-30b-a3b | gate_up | bf16 |")):
            header = "| proj |" if first.startswith("| down") else "| shape |"
            cell = self.cells(first, header)["moejit % of bound f / f+b"]
            shares = [round(100 * max(row[f"roofline_{s}_ms"], row[f"memory_{s}_ms"]) /
                            row[f"moejit_{s}_ms"]) for s in ("f", "fb")]
            self.assertEqual(cell, f"{shares[0]}% / {shares[1]}%")

    def test_sweep_lists_every_format_measured_at_several_token_counts(self):
        sweep = self.markdown[self.markdown.index("Token sweep, qwen3-30b-a3b:"):]
        lines = [l for l in sweep.splitlines() if l.startswith("| down |")]
        self.assertEqual([l.split("|")[2].strip() + "@" + l.split("|")[3].strip() for l in lines],
                         ["bf16@1024", "bf16@8192", "nf4@1024", "nf4@8192"])
        cells = self.cells("| down | nf4 | 1024 |", "| proj |")
        self.assertEqual(cells["vs moejit bf16 f / f+b"], "0.50x / 0.71x")  # 0.09 / 0.18, 0.3 / 0.42
        self.assertNotIn("int8", sweep)  # measured at one token count only
        self.assertIn("device copy rate (bytes read + written): 3.00 TB/s", self.markdown)

    def test_readme_tables_hold_the_main_rows_and_the_sweep(self):
        tables = self.readme.strip().split("\n\n")
        self.assertEqual(len(tables), 3)
        bf16, quantized, sweep = (t.splitlines()[2:] for t in tables)
        self.assertEqual([l.split("|")[2].strip() for l in bf16], ["down", "gate_up"])
        down = next(l for l in quantized if l.startswith("| qwen3-30b-a3b | down |"))
        # bf16 f+b, nf4 f+b, nf4 / bf16, nf4-dq / bf16, int8 f+b, int8 / bf16
        self.assertEqual([c.strip() for c in down.split("|")[3:9]],
                         ["1.05", "1.60", "1.52x", "1.54x", "1.50", "1.43x"])
        self.assertEqual([l.split("|")[1:3] for l in sweep][:2],
                         [[" gate_up ", " 8192 "], [" down ", " 1024 "]])
        self.assertIn("| 0.50x / 0.71x |", sweep[1])  # nf4 over bf16 at 1,024 tokens


if __name__ == "__main__":
    unittest.main()
