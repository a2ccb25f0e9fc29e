import './base.css';
import './jobs.css';
import './notebook.css';
