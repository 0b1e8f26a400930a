<?php
// 200 with "LNMP OK: PHP x, MariaDB y" when PHP reaches MariaDB (host `mysql`) through mysqli, else 500.
mysqli_report(MYSQLI_REPORT_OFF);
$db = @new mysqli(getenv('DB_HOST'), getenv('DB_USER'), getenv('DB_PASSWORD'), getenv('DB_NAME'));
if ($db->connect_errno) {
    http_response_code(500);
    echo "database unreachable: " . $db->connect_error . "\n";
    exit;
}
$version = $db->query('SELECT VERSION()')->fetch_row()[0];
echo "LNMP OK: PHP " . PHP_VERSION . ", MariaDB " . $version . "\n";
