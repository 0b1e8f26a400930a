<?php
// Debian's wordpress package reads this; values come from the container environment.
define('DB_NAME', getenv('WORDPRESS_DB_NAME'));
define('DB_USER', getenv('WORDPRESS_DB_USER'));
define('DB_PASSWORD', getenv('WORDPRESS_DB_PASSWORD'));
define('DB_HOST', getenv('WORDPRESS_DB_HOST'));
define('WP_CONTENT_DIR', '/var/lib/wordpress/wp-content');
?>
