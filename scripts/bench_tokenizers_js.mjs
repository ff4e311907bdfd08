// The tokenizers.js peer of scripts/bench_tokenizers.py: encodes every line of a text file with a
// tokenizer.json through Hugging Face's JavaScript implementation (npm @huggingface/tokenizers,
// installed into the cache by scripts/bench_tokenizers.sh; its directory in TOKENIZERS_JS_DIR),
// ROUNDS times, and prints {"seconds": [...]} as JSON; writes the ids of the last round, one line
// of ids per line of text.
//
//   node bench_tokenizers_js.mjs TOKENIZER_JSON TEXT_FILE ROUNDS IDS_OUT
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [tokenizerFile, textFile, roundsText, idsOut] = process.argv.slice(2);
const dir = process.env.TOKENIZERS_JS_DIR;
const entry = path.join(dir, "node_modules", "@huggingface", "tokenizers", "dist", "tokenizers.mjs");
const { Tokenizer } = await import(pathToFileURL(entry).href);
const tokenizer = new Tokenizer(JSON.parse(fs.readFileSync(tokenizerFile, "utf8")), {});
let text = fs.readFileSync(textFile, "utf8");
if (text.endsWith("\n")) text = text.slice(0, -1);
const lines = text.split("\n");
const seconds = [];
let ids = [];
for (let round = 0; round < Number(roundsText); ++round) {
  const start = process.hrtime.bigint();
  ids = lines.map((line) => tokenizer.encode(line, { add_special_tokens: false }).ids);
  seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
}
fs.writeFileSync(idsOut, ids.map((row) => row.join(" ")).join("\n") + "\n");
console.log(JSON.stringify({ seconds }));
