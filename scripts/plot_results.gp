# The plots of scripts/reproduce_tables.sh, drawn from the data files scripts/reproduce_tables.py
# writes under RUN_ROOT/plots. Variables (gnuplot -e "..." scripts/plot_results.gp):
#   data   the data file: one block per series (runs, models), blocks separated by two blank
#          lines, each block's first line its title in the first column
#   out    the PNG to write
#   chart  "curves": blocks of "step valid_ppl": validation perplexity against step
#          "tradeoff": one-line blocks of "label file_mb test_ppl decode_tok_s": two panels,
#          perplexity against file size and against decode speed
#   note   a subtitle ("quick version" or empty)
if (!exists("note")) note = ""
# noenhanced: model names such as q4_0 are text, not subscripts.
set terminal pngcairo noenhanced size 1100,700 font "DejaVu Sans,11"
set output out
set grid lc rgb "#dddddd"
stats data using 2 nooutput
blocks = STATS_blocks
suffix = (note eq "" ? "" : " (" . note . ")")

if (chart eq "curves") {
  set title "Table 2: validation perplexity during training" . suffix
  set key below box height 1
  set xlabel "step"
  set ylabel "validation perplexity (log scale)"
  set logscale y
  set ytics (20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200, 250, 300, 400, 500, 700, 1000, 1500, 2000)
  set autoscale yfix
  set offsets 0, 0, graph 0.05, graph 0.05
  plot for [i=0:blocks-1] data index i using 1:2 with linespoints pointsize 0.9 lw 1.5 \
    title columnheader(1)
}

if (chart eq "tradeoff") {
  set multiplot title "Table 3: compressing the KJV teacher" . suffix
  set ylabel "test perplexity"
  set offsets graph 0.08, graph 0.08, graph 0.1, graph 0.1
  set tmargin at screen 0.9
  set bmargin at screen 0.32
  set key at screen 0.5, 0.1 center center horizontal maxrows 3 box
  set lmargin at screen 0.07
  set rmargin at screen 0.48
  set xlabel "GGUF file size (MB)"
  plot for [i=0:blocks-1] data index i using 2:3 with points pt (i % 6 + 5) ps 1.8 \
    title columnheader(1)
  unset key
  set lmargin at screen 0.57
  set rmargin at screen 0.98
  set xlabel "decode tokens/s (runtime)"
  plot for [i=0:blocks-1] data index i using 4:3 with points pt (i % 6 + 5) ps 1.8 notitle
  unset multiplot
}
