# limuon compare: plots of gram_ns_training (run: gnuplot plots.gp in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,640 font 'Sans,11' noenhanced
} else {
  set terminal png size 1000,640 noenhanced
}
set grid
set key top right box opaque
set ylabel 'validation loss'
set yrange [*:*]

set output 'val_loss_vs_samples.png'
set title 'Validation loss vs samples (mean ± std over 2 seeds, each config at its best lr; budget 300 steps)'
set xlabel 'training samples'
set ylabel 'validation loss'
plot 'curves.dat' index 0 using 2:5:6 with yerrorlines lw 2 pt 7 ps 0.8 title 'muon-ns5 (lr 0.02)', \
     'curves.dat' index 1 using 2:5:6 with yerrorlines lw 2 pt 7 ps 0.8 title 'muon-gram_ns (lr 0.02)'
unset output

set output 'val_loss_vs_grad_evals.png'
set title 'Validation loss vs gradient evaluations (mean ± std over 2 seeds; LiMuon storm=exact spends 2 per step)'
set xlabel 'gradient evaluations (samples × evaluations per step)'
set ylabel 'validation loss'
plot 'curves.dat' index 0 using 3:5:6 with yerrorlines lw 2 pt 7 ps 0.8 title 'muon-ns5 (lr 0.02)', \
     'curves.dat' index 1 using 3:5:6 with yerrorlines lw 2 pt 7 ps 0.8 title 'muon-gram_ns (lr 0.02)'
unset output

set output 'val_loss_vs_seconds.png'
set title 'Validation loss vs wall-clock time (mean ± std over 2 seeds)'
set xlabel 'training time, s (steps only, evaluation excluded)'
set ylabel 'validation loss'
plot 'curves.dat' index 0 using 4:5:6 with yerrorlines lw 2 pt 7 ps 0.8 title 'muon-ns5 (lr 0.02)', \
     'curves.dat' index 1 using 4:5:6 with yerrorlines lw 2 pt 7 ps 0.8 title 'muon-gram_ns (lr 0.02)'
unset output

if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1800,600 font 'Sans,10' noenhanced
} else {
  set terminal png size 1800,600 noenhanced
}
set output 'val_loss_overview.png'
set multiplot layout 1,3 title 'Validation loss, one line per optimizer (mean ± std over 2 seeds, each config at its best lr; budget 300 steps)'
set ylabel 'validation loss (nats per token)'
set title ''
set xlabel 'training samples (sequences)'
plot 'curves.dat' index 0 using 2:5:6 with yerrorlines lw 2 pt 7 ps 0.6 title 'muon-ns5 (lr 0.02)', \
     'curves.dat' index 1 using 2:5:6 with yerrorlines lw 2 pt 7 ps 0.6 title 'muon-gram_ns (lr 0.02)'
set title ''
set xlabel 'gradient evaluations (samples × evaluations per step)'
plot 'curves.dat' index 0 using 3:5:6 with yerrorlines lw 2 pt 7 ps 0.6 title 'muon-ns5 (lr 0.02)', \
     'curves.dat' index 1 using 3:5:6 with yerrorlines lw 2 pt 7 ps 0.6 title 'muon-gram_ns (lr 0.02)'
set title ''
set xlabel 'training time, s (steps only, evaluation excluded)'
plot 'curves.dat' index 0 using 4:5:6 with yerrorlines lw 2 pt 7 ps 0.6 title 'muon-ns5 (lr 0.02)', \
     'curves.dat' index 1 using 4:5:6 with yerrorlines lw 2 pt 7 ps 0.6 title 'muon-gram_ns (lr 0.02)'
unset multiplot
unset output
set ylabel 'validation loss'

if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,640 font 'Sans,11' noenhanced
} else {
  set terminal png size 1000,640 noenhanced
}

set output 'memory.png'
set multiplot layout 1,2 title 'Memory per optimizer (each config at its best lr, mean over seeds)'
set style fill solid 0.6 border -1
set boxwidth 0.6
set xrange [-0.6:1.6]
set yrange [0:*]
set xtics rotate by -30 nomirror
set key off
unset xlabel
set title 'persistent optimizer state'
set ylabel 'MiB'
plot 'memory.dat' using 1:3:xtic(2) with boxes lc rgb '#4a7fb0', '' using 1:3:(sprintf('%.3g', $3)) with labels offset 0,0.7
set title 'peak resident memory of the training process'
set ylabel 'MiB'
plot 'memory.dat' using 1:4:xtic(2) with boxes lc rgb '#c0504d', '' using 1:4:(sprintf('%.0f', $4)) with labels offset 0,0.7
unset multiplot
unset output
set xtics norotate mirror
set autoscale x
set key top right box opaque
