<?php
// Build step: compile every PHP file of WordPress into opcache's file cache (no code runs), so a new
// container's first page is served from cache. Keys are real paths, the same ones Apache includes.
// Compiling declares a file's top-level functions: noop.php (stubs for load-scripts.php) would clash.
$root = $argv[1] ?? '/usr/share/wordpress';
$count = 0;
$files = new RecursiveIteratorIterator(
    new RecursiveDirectoryIterator($root, FilesystemIterator::SKIP_DOTS | FilesystemIterator::FOLLOW_SYMLINKS)
);
foreach ($files as $file) {
    $path = $file->getRealPath();
    if ($file->getExtension() === 'php' && basename($path) !== 'noop.php' && @opcache_compile_file($path)) {
        $count++;
    }
}
fwrite(STDERR, "opcache: $count files compiled from $root\n");
exit($count > 0 ? 0 : 1);
