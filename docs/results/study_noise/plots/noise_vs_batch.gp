if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1000,640 font 'Sans,11' noenhanced
} else {
  set terminal png size 1000,640 noenhanced
}
set output 'noise_vs_batch.png'
set title 'Final validation loss vs batch size at an equal sample budget (mean, 95 % CI over seeds; each at its chosen lr)'
set xlabel 'batch size (sequences per step; smaller = noisier gradients, more steps)'
set ylabel 'final validation loss'
set logscale x 2
set grid
set key top left box opaque
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set xtics ('4' 4, '8' 8, '16' 16, '64' 64)
plot 'noise_vs_batch.dat' index 0 using 1:2:3 with yerrorlines lw 2 pt 7 title 'muon', \
     'noise_vs_batch.dat' index 1 using 1:2:3 with yerrorlines lw 2 pt 7 title 'limuon-exact', \
     'noise_vs_batch.dat' index 2 using 1:2:3 with yerrorlines lw 2 pt 7 title 'limuon-light-r32-exact'
unset output
