<?php
// A write and a read through mysqli: POST (or GET) ?add=VALUE stores a row; the answer lists every row, one a line.
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
header('Content-Type: text/plain');
try {
    $db = new mysqli(getenv('DB_HOST'), getenv('DB_USER'), getenv('DB_PASSWORD'), getenv('DB_NAME'));
    $db->query('CREATE TABLE IF NOT EXISTS rows_demo (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(255) NOT NULL)');
    $add = $_POST['add'] ?? $_GET['add'] ?? null;
    if ($add !== null && $add !== '') {
        $stmt = $db->prepare('INSERT INTO rows_demo (v) VALUES (?)');
        $stmt->bind_param('s', $add);
        $stmt->execute();
    }
    foreach ($db->query('SELECT v FROM rows_demo ORDER BY id')->fetch_all() as $row) {
        echo $row[0], "\n";
    }
} catch (mysqli_sql_exception $e) {
    http_response_code(500);
    echo "database error: ", $e->getMessage(), "\n";
}
