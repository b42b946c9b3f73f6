# limuon compare: plots of study_noise (run: gnuplot plots.gp in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1300,640 font 'Sans,11' noenhanced
} else {
  set terminal png size 1300,640 noenhanced
}
set grid
set key outside right top Left reverse box width 2
set ylabel 'validation loss'
set yrange [*:*]

set output 'val_loss_vs_samples.png'
set title 'Validation loss vs samples (mean ± std over 4 seeds, each config at its best lr; budget 16000 samples)'
set xlabel 'training samples'
set ylabel 'validation loss'
plot 'curves.dat' index 0 using 2:5:6 with yerrorlines lw 2 lc rgb '#1f77b4' pt 7 dt 1 ps 0.8 title 'muon-b4 (lr 0.005)', \
     'curves.dat' index 1 using 2:5:6 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 ps 0.8 title 'limuon-exact-b4 (lr 0.02)', \
     'curves.dat' index 2 using 2:5:6 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 ps 0.8 title 'limuon-light-r32-exact-b4 (lr 0.02)', \
     'curves.dat' index 3 using 2:5:6 with yerrorlines lw 2 lc rgb '#d62728' pt 7 dt 1 ps 0.8 title 'muon-b16 (lr 0.01)', \
     'curves.dat' index 4 using 2:5:6 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 ps 0.8 title 'limuon-exact-b16 (lr 0.04)', \
     'curves.dat' index 5 using 2:5:6 with yerrorlines lw 2 lc rgb '#8c564b' pt 9 dt 3 ps 0.8 title 'limuon-light-r32-exact-b16-beta1 (lr 0.08)', \
     'curves.dat' index 6 using 2:5:6 with yerrorlines lw 2 lc rgb '#e377c2' pt 7 dt 1 ps 0.8 title 'muon-b64 (lr 0.02)', \
     'curves.dat' index 7 using 2:5:6 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 ps 0.8 title 'limuon-exact-b64 (lr 0.04)', \
     'curves.dat' index 8 using 2:5:6 with yerrorlines lw 2 lc rgb '#bcbd22' pt 9 dt 3 ps 0.8 title 'limuon-light-r32-exact-b64-beta1 (lr 0.04)'
unset output

set output 'val_loss_vs_grad_evals.png'
set title 'Validation loss vs gradient evaluations (mean ± std over 4 seeds; LiMuon storm=exact spends 2 per step)'
set xlabel 'gradient evaluations (samples × evaluations per step)'
set ylabel 'validation loss'
plot 'curves.dat' index 0 using 3:5:6 with yerrorlines lw 2 lc rgb '#1f77b4' pt 7 dt 1 ps 0.8 title 'muon-b4 (lr 0.005)', \
     'curves.dat' index 1 using 3:5:6 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 ps 0.8 title 'limuon-exact-b4 (lr 0.02)', \
     'curves.dat' index 2 using 3:5:6 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 ps 0.8 title 'limuon-light-r32-exact-b4 (lr 0.02)', \
     'curves.dat' index 3 using 3:5:6 with yerrorlines lw 2 lc rgb '#d62728' pt 7 dt 1 ps 0.8 title 'muon-b16 (lr 0.01)', \
     'curves.dat' index 4 using 3:5:6 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 ps 0.8 title 'limuon-exact-b16 (lr 0.04)', \
     'curves.dat' index 5 using 3:5:6 with yerrorlines lw 2 lc rgb '#8c564b' pt 9 dt 3 ps 0.8 title 'limuon-light-r32-exact-b16-beta1 (lr 0.08)', \
     'curves.dat' index 6 using 3:5:6 with yerrorlines lw 2 lc rgb '#e377c2' pt 7 dt 1 ps 0.8 title 'muon-b64 (lr 0.02)', \
     'curves.dat' index 7 using 3:5:6 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 ps 0.8 title 'limuon-exact-b64 (lr 0.04)', \
     'curves.dat' index 8 using 3:5:6 with yerrorlines lw 2 lc rgb '#bcbd22' pt 9 dt 3 ps 0.8 title 'limuon-light-r32-exact-b64-beta1 (lr 0.04)'
unset output

set output 'val_loss_vs_seconds.png'
set title 'Validation loss vs wall-clock time (mean ± std over 4 seeds)'
set xlabel 'training time, s (steps × ms/step measured on a quiet machine)'
set ylabel 'validation loss'
plot 'curves.dat' index 0 using 4:5:6 with yerrorlines lw 2 lc rgb '#1f77b4' pt 7 dt 1 ps 0.8 title 'muon-b4 (lr 0.005)', \
     'curves.dat' index 1 using 4:5:6 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 ps 0.8 title 'limuon-exact-b4 (lr 0.02)', \
     'curves.dat' index 2 using 4:5:6 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 ps 0.8 title 'limuon-light-r32-exact-b4 (lr 0.02)', \
     'curves.dat' index 3 using 4:5:6 with yerrorlines lw 2 lc rgb '#d62728' pt 7 dt 1 ps 0.8 title 'muon-b16 (lr 0.01)', \
     'curves.dat' index 4 using 4:5:6 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 ps 0.8 title 'limuon-exact-b16 (lr 0.04)', \
     'curves.dat' index 5 using 4:5:6 with yerrorlines lw 2 lc rgb '#8c564b' pt 9 dt 3 ps 0.8 title 'limuon-light-r32-exact-b16-beta1 (lr 0.08)', \
     'curves.dat' index 6 using 4:5:6 with yerrorlines lw 2 lc rgb '#e377c2' pt 7 dt 1 ps 0.8 title 'muon-b64 (lr 0.02)', \
     'curves.dat' index 7 using 4:5:6 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 ps 0.8 title 'limuon-exact-b64 (lr 0.04)', \
     'curves.dat' index 8 using 4:5:6 with yerrorlines lw 2 lc rgb '#bcbd22' pt 9 dt 3 ps 0.8 title 'limuon-light-r32-exact-b64-beta1 (lr 0.04)'
unset output

if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 2100,600 font 'Sans,10' noenhanced
} else {
  set terminal png size 2100,600 noenhanced
}
set output 'val_loss_overview.png'
set multiplot layout 1,3 margins 0.04,0.81,0.14,0.89 spacing 0.045,0 title 'Validation loss, one line per optimizer (mean ± std over 4 seeds, each config at its best lr; budget 16000 samples)'
set ylabel 'validation loss (nats per token)'
set key off
set title ''
set xlabel 'training samples (sequences)'
plot 'curves.dat' index 0 using 2:5:6 with yerrorlines lw 2 lc rgb '#1f77b4' pt 7 dt 1 ps 0.6 title 'muon-b4 (lr 0.005)', \
     'curves.dat' index 1 using 2:5:6 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 ps 0.6 title 'limuon-exact-b4 (lr 0.02)', \
     'curves.dat' index 2 using 2:5:6 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 ps 0.6 title 'limuon-light-r32-exact-b4 (lr 0.02)', \
     'curves.dat' index 3 using 2:5:6 with yerrorlines lw 2 lc rgb '#d62728' pt 7 dt 1 ps 0.6 title 'muon-b16 (lr 0.01)', \
     'curves.dat' index 4 using 2:5:6 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 ps 0.6 title 'limuon-exact-b16 (lr 0.04)', \
     'curves.dat' index 5 using 2:5:6 with yerrorlines lw 2 lc rgb '#8c564b' pt 9 dt 3 ps 0.6 title 'limuon-light-r32-exact-b16-beta1 (lr 0.08)', \
     'curves.dat' index 6 using 2:5:6 with yerrorlines lw 2 lc rgb '#e377c2' pt 7 dt 1 ps 0.6 title 'muon-b64 (lr 0.02)', \
     'curves.dat' index 7 using 2:5:6 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 ps 0.6 title 'limuon-exact-b64 (lr 0.04)', \
     'curves.dat' index 8 using 2:5:6 with yerrorlines lw 2 lc rgb '#bcbd22' pt 9 dt 3 ps 0.6 title 'limuon-light-r32-exact-b64-beta1 (lr 0.04)'
set key off
set title ''
set xlabel 'gradient evaluations (samples × evaluations per step)'
plot 'curves.dat' index 0 using 3:5:6 with yerrorlines lw 2 lc rgb '#1f77b4' pt 7 dt 1 ps 0.6 title 'muon-b4 (lr 0.005)', \
     'curves.dat' index 1 using 3:5:6 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 ps 0.6 title 'limuon-exact-b4 (lr 0.02)', \
     'curves.dat' index 2 using 3:5:6 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 ps 0.6 title 'limuon-light-r32-exact-b4 (lr 0.02)', \
     'curves.dat' index 3 using 3:5:6 with yerrorlines lw 2 lc rgb '#d62728' pt 7 dt 1 ps 0.6 title 'muon-b16 (lr 0.01)', \
     'curves.dat' index 4 using 3:5:6 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 ps 0.6 title 'limuon-exact-b16 (lr 0.04)', \
     'curves.dat' index 5 using 3:5:6 with yerrorlines lw 2 lc rgb '#8c564b' pt 9 dt 3 ps 0.6 title 'limuon-light-r32-exact-b16-beta1 (lr 0.08)', \
     'curves.dat' index 6 using 3:5:6 with yerrorlines lw 2 lc rgb '#e377c2' pt 7 dt 1 ps 0.6 title 'muon-b64 (lr 0.02)', \
     'curves.dat' index 7 using 3:5:6 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 ps 0.6 title 'limuon-exact-b64 (lr 0.04)', \
     'curves.dat' index 8 using 3:5:6 with yerrorlines lw 2 lc rgb '#bcbd22' pt 9 dt 3 ps 0.6 title 'limuon-light-r32-exact-b64-beta1 (lr 0.04)'
set key at screen 0.82,0.89 left top Left reverse box width 2
set title ''
set xlabel 'training time, s (steps × ms/step measured on a quiet machine)'
plot 'curves.dat' index 0 using 4:5:6 with yerrorlines lw 2 lc rgb '#1f77b4' pt 7 dt 1 ps 0.6 title 'muon-b4 (lr 0.005)', \
     'curves.dat' index 1 using 4:5:6 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 ps 0.6 title 'limuon-exact-b4 (lr 0.02)', \
     'curves.dat' index 2 using 4:5:6 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 ps 0.6 title 'limuon-light-r32-exact-b4 (lr 0.02)', \
     'curves.dat' index 3 using 4:5:6 with yerrorlines lw 2 lc rgb '#d62728' pt 7 dt 1 ps 0.6 title 'muon-b16 (lr 0.01)', \
     'curves.dat' index 4 using 4:5:6 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 ps 0.6 title 'limuon-exact-b16 (lr 0.04)', \
     'curves.dat' index 5 using 4:5:6 with yerrorlines lw 2 lc rgb '#8c564b' pt 9 dt 3 ps 0.6 title 'limuon-light-r32-exact-b16-beta1 (lr 0.08)', \
     'curves.dat' index 6 using 4:5:6 with yerrorlines lw 2 lc rgb '#e377c2' pt 7 dt 1 ps 0.6 title 'muon-b64 (lr 0.02)', \
     'curves.dat' index 7 using 4:5:6 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 ps 0.6 title 'limuon-exact-b64 (lr 0.04)', \
     'curves.dat' index 8 using 4:5:6 with yerrorlines lw 2 lc rgb '#bcbd22' pt 9 dt 3 ps 0.6 title 'limuon-light-r32-exact-b64-beta1 (lr 0.04)'
unset multiplot
unset output
set ylabel 'validation loss'
set key outside right top Left reverse box width 2

if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1300,640 font 'Sans,11' noenhanced
} else {
  set terminal png size 1300,640 noenhanced
}

set output 'memory.png'
set multiplot layout 1,2 title 'Memory per optimizer (each config at its best lr, mean over seeds)'
set style fill solid 0.6 border -1
set boxwidth 0.6
set xrange [-0.6:8.6]
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
set key outside right top Left reverse box width 2

set output 'lr_sweep.png'
set title 'Learning-rate sweep: final validation loss (1 seed)'
set logscale x
set xlabel 'learning rate'
set ylabel 'validation loss'
set yrange [*:*]
set xrange [*:*]
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set key outside right top Left reverse box width 2
plot 'lr_sweep.dat' index 0 using 1:2:3 with yerrorlines lw 2 lc rgb '#1f77b4' pt 7 dt 1 title 'muon-b4', \
     'lr_sweep.dat' index 1 using 1:2:3 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 title 'limuon-exact-b4', \
     'lr_sweep.dat' index 2 using 1:2:3 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 title 'limuon-light-r32-exact-b4', \
     'lr_sweep.dat' index 3 using 1:2:3 with yerrorlines lw 2 lc rgb '#d62728' pt 7 dt 1 title 'muon-b16', \
     'lr_sweep.dat' index 4 using 1:2:3 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 title 'limuon-exact-b16', \
     'lr_sweep.dat' index 5 using 1:2:3 with yerrorlines lw 2 lc rgb '#8c564b' pt 7 dt 1 title 'limuon-light-r32-exact-b16', \
     'lr_sweep.dat' index 6 using 1:2:3 with yerrorlines lw 2 lc rgb '#e377c2' pt 7 dt 1 title 'muon-b64', \
     'lr_sweep.dat' index 7 using 1:2:3 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 title 'limuon-exact-b64', \
     'lr_sweep.dat' index 8 using 1:2:3 with yerrorlines lw 2 lc rgb '#bcbd22' pt 7 dt 1 title 'limuon-light-r32-exact-b64', \
     'lr_sweep.dat' index 9 using 1:2:3 with yerrorlines lw 2 lc rgb '#8c564b' pt 9 dt 3 title 'limuon-light-r32-exact-b16-beta1', \
     'lr_sweep.dat' index 10 using 1:2:3 with yerrorlines lw 2 lc rgb '#bcbd22' pt 9 dt 3 title 'limuon-light-r32-exact-b64-beta1'
unset output
unset logscale x

set output 'tune_beta.png'
set title 'Tuning beta at each config''s chosen lr: final validation loss (1 seed)'
set logscale x
set xlabel 'beta'
set ylabel 'validation loss'
set yrange [*:*]
set xrange [*:*]
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set key outside right top Left reverse box width 2
plot 'tune_beta.dat' index 0 using 1:2:3 with yerrorlines lw 2 lc rgb '#ff7f0e' pt 7 dt 1 title 'limuon-exact-b4 (lr 0.02)', \
     'tune_beta.dat' index 1 using 1:2:3 with yerrorlines lw 2 lc rgb '#2ca02c' pt 7 dt 1 title 'limuon-light-r32-exact-b4 (lr 0.02)', \
     'tune_beta.dat' index 2 using 1:2:3 with yerrorlines lw 2 lc rgb '#9467bd' pt 7 dt 1 title 'limuon-exact-b16 (lr 0.04)', \
     'tune_beta.dat' index 3 using 1:2:3 with yerrorlines lw 2 lc rgb '#8c564b' pt 7 dt 1 title 'limuon-light-r32-exact-b16 (lr 0.04)', \
     'tune_beta.dat' index 4 using 1:2:3 with yerrorlines lw 2 lc rgb '#7f7f7f' pt 7 dt 1 title 'limuon-exact-b64 (lr 0.04)', \
     'tune_beta.dat' index 5 using 1:2:3 with yerrorlines lw 2 lc rgb '#bcbd22' pt 7 dt 1 title 'limuon-light-r32-exact-b64 (lr 0.04)'
unset output
unset logscale x
