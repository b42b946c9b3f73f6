if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 1250,640 font 'Sans,11' noenhanced
} else {
  set terminal png size 1250,640 noenhanced
}
set output 'gap_vs_samples.png'
set title 'Validation loss minus muon at equal samples along training (paired by seed; mean, 95 % CI)'
set xlabel 'training samples (sequences)'
set ylabel 'val loss minus muon (below 0: ahead)'
set grid
set key outside right top box
set xzeroaxis lt -1 lw 1
plot 'gap_vs_samples.dat' index 0 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#1f77b4' dt 1 pt 7 title 'limuon-exact, batch 4', \
     'gap_vs_samples.dat' index 1 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#ff7f0e' dt 1 pt 7 title 'limuon-exact, batch 8', \
     'gap_vs_samples.dat' index 2 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#2ca02c' dt 1 pt 7 title 'limuon-exact, batch 16', \
     'gap_vs_samples.dat' index 3 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#d62728' dt 1 pt 7 title 'limuon-exact, batch 64', \
     'gap_vs_samples.dat' index 4 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#1f77b4' dt 2 pt 9 title 'limuon-light-r32-exact, batch 4', \
     'gap_vs_samples.dat' index 5 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#ff7f0e' dt 2 pt 9 title 'limuon-light-r32-exact, batch 8', \
     'gap_vs_samples.dat' index 6 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#2ca02c' dt 2 pt 9 title 'limuon-light-r32-exact, batch 16', \
     'gap_vs_samples.dat' index 7 using 1:2:3 with yerrorlines lw 2 ps 0.6 lc rgb '#d62728' dt 2 pt 9 title 'limuon-light-r32-exact, batch 64'
unset output
