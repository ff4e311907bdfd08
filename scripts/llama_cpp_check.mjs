#!/usr/bin/env node
// Runs a GGUF file in real llama.cpp (the prebuilt CPU binary of the npm package node-llama-cpp)
// to check that llama.cpp loads it, to print its greedy continuation of a prompt (token ids and
// text, for comparison with `edgedistill run --temp 0`), and, with --bench, to measure prefill and
// decode speed the way `edgedistill bench --model` and llama-bench do.
//
// Usually started by scripts/llama_cpp.sh, which installs node-llama-cpp into a cache directory
// and passes it in EDGEDISTILL_NODE_LLAMA_CPP_DIR (a directory holding node_modules/node-llama-cpp).
//
//   node llama_cpp_check.mjs --model FILE.gguf [--prompt TEXT] [-n N] [--threads T] [--bench]
//                            [--json] [--ignore-eos] [--verbose]
//
// Exit status: 0 ok; 1 llama.cpp refused the file or failed while running it (the error and the
// llama.cpp log lines are printed, in the JSON object with --json); 2 bad usage or node-llama-cpp
// missing.
//
// Bench method (llama-bench's, and `edgedistill bench --model`'s): fixed pseudo-random token ids;
// prefill = one batch of P (64) tokens into an empty KV cache, logits of the last one; decode = D
// (64) single-token evaluations into an empty KV cache, each producing logits (and a greedy
// pick). One warm-up run, then the median of 5 runs. The decode timing includes node-llama-cpp's
// per-call JavaScript overhead (a promise round trip per token, typically some microseconds).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";

const usage = `usage: node llama_cpp_check.mjs --model FILE.gguf [options]
  --model, -m FILE     the GGUF file (required)
  --prompt, -p TEXT    the text to continue (default: "The")
  -n, --tokens N       tokens to generate greedily (default: 32; stops at an end-of-generation token
                       unless --ignore-eos)
  --threads, -t T      CPU threads for llama.cpp (default: all cores: ${os.availableParallelism?.() ?? os.cpus().length})
  --bench              measure prefill (--bench-prefill, default 64 tokens) and decode
                       (--bench-decode, default 64 tokens) speed, median of --bench-repeats (5)
                       after --bench-warmup (1) warm-up runs
  --json               print one JSON object on stdout (the human-readable report goes nowhere)
  --ignore-eos         keep generating past end-of-generation tokens
  --no-prompt-top1     skip the per-position top-1 of the prompt
  --verbose            show llama.cpp's info-level log on stderr
  --lib-dir DIR        directory holding node_modules/node-llama-cpp
                       (default: $EDGEDISTILL_NODE_LLAMA_CPP_DIR or ~/.cache/edgedistill/node-llama-cpp)`;

function parseArgs(argv) {
  const o = {
    model: null, prompt: "The", tokens: 32, threads: 0, bench: false, json: false, ignoreEos: false,
    promptTop1: true, verbose: false, libDir: null,
    benchPrefill: 64, benchDecode: 64, benchRepeats: 5, benchWarmup: 1,
  };
  const need = (i, name) => {
    if (i + 1 >= argv.length) throw new UsageError(`${name} needs a value`);
    return argv[i + 1];
  };
  const int = (v, name, min) => {
    if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`${name}: expected an integer >= ${min}, got "${v}"`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let inline = null;
    const eq = a.indexOf("=");
    if (a.startsWith("--") && eq > 0) { inline = a.slice(eq + 1); a = a.slice(0, eq); }
    const value = () => { if (inline != null) return inline; const v = need(i, a); i++; return v; };
    switch (a) {
      case "--model": case "-m": o.model = value(); break;
      case "--prompt": case "-p": o.prompt = value(); break;
      case "-n": case "--tokens": o.tokens = int(value(), a, 0); break;
      case "--threads": case "-t": o.threads = int(value(), a, 0); break;
      case "--bench": o.bench = true; break;
      case "--json": o.json = true; break;
      case "--ignore-eos": o.ignoreEos = true; break;
      case "--no-prompt-top1": o.promptTop1 = false; break;
      case "--verbose": o.verbose = true; break;
      case "--lib-dir": o.libDir = value(); break;
      case "--bench-prefill": o.benchPrefill = int(value(), a, 1); break;
      case "--bench-decode": o.benchDecode = int(value(), a, 1); break;
      case "--bench-repeats": o.benchRepeats = int(value(), a, 1); break;
      case "--bench-warmup": o.benchWarmup = int(value(), a, 0); break;
      case "--help": case "-h": console.log(usage); process.exit(0); break;
      default: throw new UsageError(`unknown argument "${argv[i]}"`);
    }
  }
  if (!o.model) throw new UsageError("--model FILE.gguf is required");
  if (o.threads === 0) o.threads = os.availableParallelism?.() ?? os.cpus().length;
  return o;
}

class UsageError extends Error {}
class InputError extends UsageError {} // exit status 2, without the usage text

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const n = v.length;
  return n % 2 === 1 ? v[(n - 1) / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A small deterministic generator (xorshift32) for the bench's token ids.
function pseudoRandomTokens(count, vocab, seed = 1234) {
  let x = seed >>> 0 || 1;
  const out = [];
  for (let i = 0; i < count; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out.push(x % vocab);
  }
  return out;
}

async function importNodeLlamaCpp(libDir) {
  const candidates = [];
  if (libDir) candidates.push(libDir);
  if (process.env.EDGEDISTILL_NODE_LLAMA_CPP_DIR) candidates.push(process.env.EDGEDISTILL_NODE_LLAMA_CPP_DIR);
  candidates.push(path.join(os.homedir(), ".cache", "edgedistill", "node-llama-cpp"));
  for (const dir of candidates) {
    const pkgDir = path.join(dir, "node_modules", "node-llama-cpp");
    const entry = path.join(pkgDir, "dist", "index.js");
    if (fs.existsSync(entry)) {
      const version = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
      return { lib: await import(pathToFileURL(entry).href), version, dir };
    }
  }
  try { // a node-llama-cpp that Node resolves from here (e.g. a global install)
    return { lib: await import("node-llama-cpp"), version: null, dir: null };
  } catch {
    throw new InputError(`node-llama-cpp not found in ${candidates.join(", ")}; run scripts/llama_cpp.sh (it installs it)`);
  }
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(opt.model)) throw new InputError(`no such file: ${opt.model}`);
  const { lib, version: nlcVersion } = await importNodeLlamaCpp(opt.libDir);
  const { getLlama, LlamaLogLevel } = lib;

  const report = { loaded: false, model: path.resolve(opt.model), threads: opt.threads };
  const say = opt.json ? () => {} : (...a) => console.log(...a);

  // Keep llama.cpp's warnings and errors: when it refuses a file, the reason is in its log
  // ("llama_model_load: error loading model: ...") while the JavaScript error is generic.
  const log = [];
  const order = ["disabled", "fatal", "error", "warn", "info", "log", "debug"];
  const keep = (level) => order.indexOf(level) <= order.indexOf(opt.verbose ? "info" : "warn");
  const perfLines = []; // llama_perf_context_print output, asked for by the bench
  const logger = (level, message) => {
    const text = String(message).replace(/\s+$/, "");
    if (text.includes("llama_perf_context_print")) { perfLines.push(text); return; }
    if (!text || !keep(level)) return;
    log.push(`[${level}] ${text}`);
    process.stderr.write(`llama.cpp ${level}: ${text}\n`);
  };

  const fail = (stage, err) => {
    report.error_stage = stage;
    report.error = err instanceof Error ? err.message : String(err);
    report.llama_cpp_log = log;
    if (opt.json) console.log(JSON.stringify(report, null, 1));
    else {
      console.log(`FAILED (${stage}): ${report.error}`);
      if (log.length) console.log("llama.cpp log:\n  " + log.join("\n  "));
    }
    process.exitCode = 1;
  };

  let llama;
  try {
    // The prebuilt CPU binary only: never build llama.cpp from source, never download anything.
    llama = await getLlama({
      gpu: false,
      build: "never",
      usePrebuiltBinaries: true,
      skipDownload: true,
      progressLogs: false,
      maxThreads: opt.threads,
      logLevel: opt.verbose ? LlamaLogLevel.info : LlamaLogLevel.warn,
      logger,
    });
  } catch (err) {
    return fail("getLlama (loading the llama.cpp binary)", err);
  }
  const release = llama.llamaCppRelease;
  report.llama_cpp_version = `${release.repo}@${release.release}`;
  report.node_llama_cpp_version = nlcVersion;
  report.llama_cpp_build = llama.buildType;
  report.llama_cpp_system_info = llama.systemInfo.trim();

  let model;
  try {
    model = await llama.loadModel({ modelPath: opt.model, gpuLayers: 0, checkTensors: true });
  } catch (err) {
    return fail("loadModel (llama.cpp reading the GGUF file)", err);
  }
  report.loaded = true;
  const md = model.fileInfo.metadata ?? {};
  const arch = md.general?.architecture;
  const archMd = (arch && md[arch]) || {};
  report.architecture = arch;
  report.model_description = model.typeDescription;
  report.vocab_type = model.vocabularyType;
  report.vocab_size = md.tokenizer?.ggml?.tokens?.length ?? null;
  report.context_length_train = model.trainContextSize;
  report.embedding_length = model.embeddingVectorSize;
  report.layers = archMd.block_count ?? null;
  report.heads = archMd.attention?.head_count ?? null;
  report.heads_kv = archMd.attention?.head_count_kv ?? null;
  report.feed_forward_length = archMd.feed_forward_length ?? null;
  report.file_bytes = fs.statSync(opt.model).size;
  report.model_size_bytes = model.size;
  report.bos = model.tokens.bos;
  report.eos = model.tokens.eos;
  report.add_bos = model.tokens.shouldPrependBosToken;
  const warnings = model.getWarnings();
  if (warnings.length) report.model_warnings = warnings;

  say(`llama.cpp ${report.llama_cpp_version} (node-llama-cpp ${nlcVersion ?? "?"}, ${report.llama_cpp_build} CPU binary) loaded ${opt.model}`);
  say(`  ${report.model_description}; vocab ${report.vocab_size} (${report.vocab_type}), train context ${report.context_length_train}, ` +
      `embedding ${report.embedding_length}, layers ${report.layers}, heads ${report.heads}/${report.heads_kv} kv, ffn ${report.feed_forward_length}`);
  say(`  BOS ${report.bos} (prepended: ${report.add_bos}), EOS ${report.eos}; ${report.file_bytes} bytes; threads ${opt.threads}`);
  for (const w of warnings) say(`  warning: ${w}`);

  try {
    // ---- tokenize + greedy generation ----
    const promptTokens = model.tokenize(opt.prompt);
    if (report.add_bos && report.bos != null) promptTokens.unshift(report.bos);
    if (promptTokens.length === 0 && report.bos != null) promptTokens.push(report.bos);
    if (promptTokens.length === 0) throw new Error("the prompt tokenizes to nothing and the model has no BOS token");
    report.prompt = opt.prompt;
    report.prompt_tokens = promptTokens;

    const needed = Math.max(promptTokens.length + opt.tokens + 1, opt.bench ? Math.max(opt.benchPrefill, opt.benchDecode) + 1 : 0);
    const context = await model.createContext({
      contextSize: needed,
      batchSize: Math.max(promptTokens.length, opt.bench ? opt.benchPrefill : 1),
      threads: { ideal: opt.threads, min: opt.threads },
      sequences: 1,
      failedCreationRemedy: false,
      performanceTracking: opt.bench, // llama.cpp's own timers (llama_perf_context), read by the bench
    });
    report.context_size = context.contextSize;
    report.flash_attention = context.flashAttention;
    report.context_threads = context.currentThreads;
    const seq = context.getSequence();

    // The prompt in one batch: the top-1 next token (and its log-probability) at every position,
    // the greedy pick after the last one.
    const greedy = { temperature: 0 };
    const withTop1 = {
      generateNext: { token: true, options: greedy, totalLogitWeight: true },
    };
    const promptInput = promptTokens.map((t, i) =>
      (opt.promptTop1 || i === promptTokens.length - 1) ? [t, withTop1] : t);
    const promptOut = await seq.controlledEvaluate(promptInput);
    if (opt.promptTop1) {
      report.prompt_top1 = promptOut.map((r) => r?.next?.token ?? null);
      // log p(top1) = -log(sum exp(logit - max logit))
      report.prompt_top1_logprob = promptOut.map((r) =>
        r?.next?.totalLogitWeight != null ? Number((-Math.log(r.next.totalLogitWeight)).toFixed(6)) : null);
    }
    const generated = [];
    let next = promptOut[promptOut.length - 1]?.next?.token;
    let stoppedAtEog = false;
    while (generated.length < opt.tokens && next != null) {
      generated.push(next);
      if (!opt.ignoreEos && model.isEogToken(next)) { stoppedAtEog = true; break; }
      if (generated.length === opt.tokens || seq.nextTokenIndex >= seq.contextSize) break;
      const out = await seq.controlledEvaluate([[next, { generateNext: { token: true, options: greedy } }]]);
      next = out[0]?.next?.token;
    }
    report.generated_tokens = generated;
    const textTokens = stoppedAtEog ? generated.slice(0, -1) : generated;
    report.generated_text = model.detokenize(textTokens, false, promptTokens);
    report.generated_pieces = textTokens.map((t) => model.detokenize([t]));
    report.stopped_at_eog = stoppedAtEog;

    say(`prompt ${JSON.stringify(opt.prompt)} -> ${promptTokens.length} tokens: ${JSON.stringify(promptTokens)}`);
    if (opt.promptTop1) say(`prompt top-1 next tokens: ${JSON.stringify(report.prompt_top1)}`);
    say(`greedy ${generated.length} tokens${stoppedAtEog ? " (stopped at end-of-generation token)" : ""}: ${JSON.stringify(generated)}`);
    say(`greedy text: ${JSON.stringify(report.generated_text)}`);
    say(`prompt + continuation:\n${opt.prompt}${report.generated_text}`);

    // ---- bench ----
    if (opt.bench) {
      // llama.cpp's own timers for the evaluations since the last call (llama_perf_context_print,
      // which also resets them): what llama-bench times, without node-llama-cpp's JS overhead.
      const readPerf = async () => {
        perfLines.length = 0;
        const level = llama.logLevel;
        llama.logLevel = LlamaLogLevel.info;
        await context.printTimings();
        for (let i = 0; i < 100 && !perfLines.some((l) => l.includes("total time")); i++)
          await new Promise((r) => setTimeout(r, 5));
        llama.logLevel = level;
        const num = (re) => { for (const l of perfLines) { const m = l.match(re); if (m) return [Number(m[1]), Number(m[2])]; } return [NaN, 0]; };
        const [promptMs, promptTokens] = num(/prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens/);
        const [evalMs, evalRuns] = num(/\beval time =\s*([\d.]+) ms \/\s*(\d+) runs/);
        return { promptMs, promptTokens, evalMs, evalRuns };
      };
      const vocab = report.vocab_size ?? 32000;
      const tokens = pseudoRandomTokens(Math.max(opt.benchPrefill, opt.benchDecode), vocab);
      const lastLogits = { generateNext: { token: true, options: greedy } };
      const wall = { prefill: [], decode: [] }, internal = { prefill: [], decode: [] };
      await readPerf(); // reset the timers
      for (let run = 0; run < opt.benchWarmup + opt.benchRepeats; run++) {
        await seq.clearHistory();
        await readPerf();
        const batch = tokens.slice(0, opt.benchPrefill).map((t, i) => (i === opt.benchPrefill - 1 ? [t, lastLogits] : t));
        let t0 = process.hrtime.bigint();
        await seq.controlledEvaluate(batch);
        const prefillS = Number(process.hrtime.bigint() - t0) / 1e9;
        const prefillPerf = await readPerf();

        await seq.clearHistory();
        await readPerf();
        t0 = process.hrtime.bigint();
        for (let i = 0; i < opt.benchDecode; i++) await seq.controlledEvaluate([[tokens[i], lastLogits]]);
        const decodeS = Number(process.hrtime.bigint() - t0) / 1e9;
        const decodePerf = await readPerf();
        if (run < opt.benchWarmup) continue;
        wall.prefill.push(opt.benchPrefill / prefillS);
        wall.decode.push(1000 * decodeS / opt.benchDecode);
        // llama.cpp counts the first evaluation after a reset as a prompt evaluation
        if (prefillPerf.promptTokens === opt.benchPrefill) internal.prefill.push(1000 * opt.benchPrefill / prefillPerf.promptMs);
        const promptPart = decodePerf.promptTokens + decodePerf.evalRuns === opt.benchDecode ? decodePerf.promptMs : 0;
        if (decodePerf.evalRuns >= opt.benchDecode - 1) internal.decode.push((decodePerf.evalMs + promptPart) / opt.benchDecode);
      }
      const r3 = (x) => Number(x.toFixed(3));
      const haveInternal = internal.prefill.length === opt.benchRepeats && internal.decode.length === opt.benchRepeats;
      const main = haveInternal ? internal : wall;
      report.bench = {
        method: "llama-bench's: pseudo-random tokens; prefill = one batch into an empty KV cache (logits of the last token); " +
          "decode = single-token evaluations into an empty KV cache; median after warm-up",
        timing: haveInternal
          ? "llama.cpp's own timers (llama_perf_context: llama_decode to synchronize), as llama-bench; *_wall: the same runs timed in JavaScript, with node-llama-cpp's per-call overhead"
          : "wall clock in JavaScript, with node-llama-cpp's per-call overhead (llama.cpp's timers were not readable)",
        prefill_tokens: opt.benchPrefill, decode_tokens: opt.benchDecode,
        repeats: opt.benchRepeats, warmup: opt.benchWarmup,
        prefill_tokens_per_s_runs: main.prefill.map(r3), decode_ms_per_token_runs: main.decode.map(r3),
        prefill_tokens_per_s_wall: r3(median(wall.prefill)), decode_ms_per_token_wall: r3(median(wall.decode)),
        prefill_tokens_per_s_wall_runs: wall.prefill.map(r3), decode_ms_per_token_wall_runs: wall.decode.map(r3),
        loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
      };
      report.prefill_tokens_per_s = r3(median(main.prefill));
      report.prefill_tokens_per_s_max = r3(Math.max(...main.prefill));
      report.decode_ms_per_token = r3(median(main.decode));
      report.decode_ms_per_token_min = r3(Math.min(...main.decode));
      report.decode_tokens_per_s = r3(1000 / report.decode_ms_per_token);
      const b = report.bench;
      say(`bench (${opt.threads} threads, median of ${opt.benchRepeats} after ${opt.benchWarmup} warm-up; ${haveInternal ? "llama.cpp's own timers" : "JavaScript wall clock"}; load average ${b.loadavg.join(", ")}):`);
      say(`  prefill ${report.prefill_tokens_per_s.toFixed(1)} tokens/s (${opt.benchPrefill} tokens in one batch; runs ${b.prefill_tokens_per_s_runs.map((x) => x.toFixed(0)).join(", ")})`);
      say(`  decode  ${report.decode_ms_per_token.toFixed(3)} ms/token = ${report.decode_tokens_per_s.toFixed(1)} tokens/s (${opt.benchDecode} tokens; runs ${b.decode_ms_per_token_runs.map((x) => x.toFixed(3)).join(", ")} ms)`);
      if (haveInternal)
        say(`  through node-llama-cpp (wall): prefill ${b.prefill_tokens_per_s_wall.toFixed(1)} tokens/s, decode ${b.decode_ms_per_token_wall.toFixed(3)} ms/token`);
    }
    await context.dispose();
  } catch (err) {
    return fail("evaluation", err);
  }
  if (log.length) report.llama_cpp_log = log;
  if (opt.json) console.log(JSON.stringify(report));
  await model.dispose();
  await llama.dispose();
}

main().catch((err) => {
  if (err instanceof UsageError) {
    console.error(`llama_cpp_check: ${err.message}${err instanceof InputError ? "" : "\n" + usage}`);
    process.exitCode = 2;
  } else {
    console.error(err?.stack ?? String(err));
    process.exitCode = 1;
  }
});
