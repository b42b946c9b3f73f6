if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1250,640 font 'Sans,11' noenhanced
} else {
  set terminal png size 1250,640 noenhanced
}
set output 'gap_vs_samples.png'
set title 'Validation loss minus muon at equal samples along training (paired by seed; mean, 95 % CI)'
set xlabel 'training samples'
set ylabel 'val loss minus muon (below 0: ahead)'
set grid
set key outside right top box
set xzeroaxis lt -1 lw 1
plot 'gap_vs_samples.dat' index 0 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#1f77b4' dt 1 pt 7 title 'limuon-exact-beta0.6', \
     'gap_vs_samples.dat' index 1 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#ff7f0e' dt 1 pt 7 title 'limuon-light-r32-exact-beta1', \
     'gap_vs_samples.dat' index 2 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#2ca02c' dt 1 pt 7 title 'adamw', \
     'gap_vs_samples.dat' index 3 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#d62728' dt 1 pt 7 title 'limuon-light-r8-exact-beta1', \
     'gap_vs_samples.dat' index 4 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#9467bd' dt 1 pt 7 title 'limuon-paper-r32-exact', \
     'gap_vs_samples.dat' index 5 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#8c564b' dt 1 pt 7 title 'limuon-approx', \
     'gap_vs_samples.dat' index 6 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#e377c2' dt 1 pt 7 title 'limuon-preset-paper', \
     'gap_vs_samples.dat' index 7 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#7f7f7f' dt 1 pt 7 title 'muon-mvr1', \
     'gap_vs_samples.dat' index 8 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#bcbd22' dt 1 pt 7 title 'muoneq', \
     'gap_vs_samples.dat' index 9 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#17becf' dt 1 pt 7 title 'limuon-light-r32-approx'
unset output
